"""The files the MoE connector is read from and written to.

- A dense projector (an expert's source): XTuner's ``projector/`` folder, a
  training checkpoint (``iter_*.pth`` file or DeepSpeed folder, whole-model
  keys), a training work dir (its ``last_checkpoint``) or a plain state dict
  file: :func:`load_dense_projector_state`. For InternLM-XComposer2 (IXC2,
  arXiv 2401.16420), whose dense connector is ``vision_proj.{0,2}``: a
  release folder or offline hub id (its ``vision_proj.*`` only are read),
  ChartMoE's ``mm_mlp.bin`` (what its align trainer saves, IDEA-FinAI/
  ChartMoE ``chartmoe/train/train.py``; :data:`ALIGN_FILE`) or a folder
  holding one (the ``pth_to_hf`` output of an align stage).
- Our connector folder (``save_pretrained``: weights + code), or a folder
  holding one as :data:`CONNECTOR_SUBDIR` (the ``pth_to_hf`` output of an
  IXC2 MoE stage), or a ChartMoE release folder / hub id (its
  ``vision_proj.gate`` / ``experts``): :func:`load_connector`.
- ChartMoE's own connector file (``moe_construction.py`` of the reference
  code saves ``mlp_moe.pth``: ``gate.weight [E, Dv]``,
  ``experts.{i}.{0,2}.*`` and ``num_selected`` as a plain int; experts in
  the order general, table, json, code): read by
  :func:`connector_from_reference` (and :func:`load_connector`), written by
  :func:`connector_to_reference` / :func:`write_reference` /
  :func:`export_reference`.
"""
import os
import os.path as osp
import re

import torch

from ..engine.run_log import last_checkpoint
from .checkpoint import load_checkpoint, load_hf_folder_state
from .configuration_moe_projector import (CHARTMOE_EXPERT_NAMES,
                                          MoEProjectorConfig)
from .modeling_moe_projector import MoEProjectorModel

DENSE_PROJECTOR_KEY = re.compile(r'^model\.(\d+)\.(weight|bias)$')
# A dense projector's linears as checkpoints name them: XTuner's projector
# (``model.N``, in a whole LLaVA model ``projector.model.N``), IXC2's
# ``vision_proj.N`` (in a training model ``<prefix>.vision_proj.N``).
DENSE_KEY_FORMS = re.compile(
    r'^(?:(?:projector\.)?model|(?:[\w.]+\.)?vision_proj)\.(\d+)\.'
    r'(weight|bias)$')
ALIGN_FILE = 'mm_mlp.bin'  # ChartMoE's aligned dense vision_proj
CONNECTOR_SUBDIR = 'vision_proj'  # the MoE connector in an IXC2 pth_to_hf
_EXPERT_LINEAR = re.compile(r'^experts\.0\.(\d+)\.weight$')


def _strip_to_dense_keys(state_dict, source):
    """``model.{i}.{weight,bias}`` of a dense projector from any of
    :data:`DENSE_KEY_FORMS`."""
    dense = {}
    for key, value in state_dict.items():
        match = DENSE_KEY_FORMS.match(key)
        if match:
            dense[f'model.{match.group(1)}.{match.group(2)}'] = value
    if not dense:
        sample = ', '.join(list(state_dict)[:5])
        raise ValueError(
            f'{source}: no dense projector weights found; expected keys '
            f"'model.<i>.weight', 'projector.model.<i>.weight' or "
            f"'vision_proj.<i>.weight', got "
            f'[{sample}{", ..." if len(state_dict) > 5 else ""}]')
    return dense


def _is_ixc2_release(source):
    """Whether ``source`` is an IXC2-family release folder or offline hub
    id (read lazily: the family imports this package)."""
    from ..families.ixc2.chat import is_ixc2_source
    return is_ixc2_source(source)


def released_vision_proj(source):
    """``(state, num_selected)``: the ``vision_proj.*`` tensors of an
    IXC2-family release folder or offline hub id, without the prefix
    (dense ``{0,2}.{weight,bias}`` or ChartMoE's ``gate.weight``,
    ``experts.{i}.{0,2}.*``), read alone from its weight files; and the
    config's ``num_selected`` (None: a dense connector)."""
    from ..families.ixc2.checkpoint import WeightFiles, resolve_folder
    from ..families.ixc2.configuration_ixc2 import IXC2Config
    folder = resolve_folder(source)
    config = IXC2Config.from_released(folder)
    weights = WeightFiles(folder)
    by_file = {}
    for key, stored in weights.tensors.items():
        if key.startswith('vision_proj.') and \
                key != 'vision_proj.num_selected':
            by_file.setdefault(stored.file, []).append(key)
    if not by_file:
        raise ValueError(f'{folder}: no vision_proj.* tensors; expected an '
                         'InternLM-XComposer2 release')
    state = {}
    for name, keys in by_file.items():
        state.update(weights.read(name, keys))
    return ({k[len('vision_proj.'):]: v for k, v in state.items()},
            config.num_selected)


def load_dense_projector_state(path):
    """Read a dense projector's weights from ``path`` (any of the module
    docstring's dense forms). Returns ``{'model.0.weight': ..., ...}``.
    """
    path = os.fspath(path)
    if osp.isfile(osp.join(path, ALIGN_FILE)):
        path = osp.join(path, ALIGN_FILE)
    elif not osp.isfile(path) and _is_ixc2_release(path):
        state, num_selected = released_vision_proj(path)
        if num_selected is not None:
            raise ValueError(f'{path}: its vision_proj is a MoE connector '
                             '(config.json has num_selected); expected a '
                             'dense one (IXC2, or an align stage)')
        return _strip_to_dense_keys({f'vision_proj.{k}': v
                                     for k, v in state.items()}, path)
    if not osp.exists(path):
        raise FileNotFoundError(f'projector checkpoint not found: {path} '
                                '(nor a hub id in the local hub cache)')
    if osp.isdir(path) and osp.isfile(osp.join(path, 'last_checkpoint')):
        path = last_checkpoint(path)
    if osp.isdir(path) and osp.isfile(osp.join(path, 'config.json')):
        state = load_hf_folder_state(path)
    else:
        from xtuner.model.utils import guess_load_checkpoint
        try:
            state = guess_load_checkpoint(path)
        except Exception as err:  # corrupt / foreign file
            raise ValueError(f'{path}: cannot read as a checkpoint ({err})')
    return _strip_to_dense_keys(state, path)


def expert_names_for(num_experts, names=None):
    """``names`` checked against ``num_experts``; by default ChartMoE's roles
    for 4 experts, else ``expert_<i>``."""
    if names is not None:
        names = list(names)
        if len(names) != num_experts or len(set(names)) != len(names):
            raise ValueError(f'{num_experts} experts need {num_experts} '
                             f'distinct names, got {names}')
        return names
    if num_experts == len(CHARTMOE_EXPERT_NAMES):
        return list(CHARTMOE_EXPERT_NAMES)
    return [f'expert_{i}' for i in range(num_experts)]


def _read_torch_file(path):
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # corrupt / not a torch file / pickled objects
        raise ValueError(f'{path}: cannot read as a torch state dict '
                         f'({err})') from None


def connector_from_reference(state, source, expert_names=None):
    """A :class:`MoEProjectorModel` from ChartMoE's ``mlp_moe.pth`` state
    dict (see the module docstring); ``expert_names`` name the experts in
    the file's order (default general, table, json, code)."""
    if not isinstance(state, dict) or 'gate.weight' not in state:
        raise ValueError(
            f"{source}: not a ChartMoE connector file: expected keys "
            f"'gate.weight', 'experts.<i>.<j>.weight|bias', 'num_selected', "
            f'got [{", ".join(sorted(map(str, state))[:6])}]'
            if isinstance(state, dict) else
            f'{source}: expected a state dict, got {type(state).__name__}')
    num_experts, visual_hidden = state['gate.weight'].shape
    linears = sorted(int(m.group(1)) for m in map(_EXPERT_LINEAR.match, state)
                     if m)
    if not linears:
        raise ValueError(f"{source}: no 'experts.0.<j>.weight' tensors")
    num_selected = state.get('num_selected', 2)
    config = MoEProjectorConfig(
        visual_hidden_size=visual_hidden,
        llm_hidden_size=state['experts.0.0.weight'].shape[0],
        depth=len(linears), bias='experts.0.0.bias' in state,
        num_experts=num_experts, num_selected=int(num_selected),
        expert_names=expert_names_for(num_experts, expert_names))
    moe = MoEProjectorModel(config)
    tensors = {k: v for k, v in state.items() if k != 'num_selected'}
    tensors['num_selected'] = torch.tensor(int(num_selected))
    load_checkpoint(moe, tensors, source, strict=True)
    return moe


def connector_to_reference(moe, order=CHARTMOE_EXPERT_NAMES):
    """The state dict of ChartMoE's ``mlp_moe.pth`` for ``moe``: experts in
    ``order`` of their names (roles, not positions), ``num_selected`` as an
    int. Only the linear (softmax) router has a place in that format."""
    if moe.config.router_type != 'softmax':
        raise ValueError(f'the reference format has a linear softmax router '
                         f'only; this connector has {moe.config.router_type!r}')
    names = list(moe.config.expert_names)
    if sorted(names) != sorted(order):
        raise ValueError(f'experts are named {names}; the reference format '
                         f'needs exactly the roles {list(order)} (name them '
                         'with --expert-names)')
    state = {'gate.weight': moe.gate.weight.detach()[
        [names.index(role) for role in order]].clone()}
    for i, role in enumerate(order):
        expert = moe.experts[names.index(role)]
        state.update({f'experts.{i}.{k}': v.detach().clone()
                      for k, v in expert.state_dict().items()})
    state['num_selected'] = int(moe.num_selected)
    return state


def load_connector(path, expert_names=None):
    """The MoE connector at ``path``: a ``save_pretrained`` folder (weights +
    code), a folder holding one as :data:`CONNECTOR_SUBDIR`, a ChartMoE
    release folder or offline hub id, or ChartMoE's ``mlp_moe.pth``. Every
    tensor must find its place; errors name the file and the keys."""
    path = os.fspath(path)
    if osp.isfile(osp.join(path, CONNECTOR_SUBDIR, 'config.json')):
        path = osp.join(path, CONNECTOR_SUBDIR)
    elif not osp.isfile(path) and _is_ixc2_release(path):
        state, num_selected = released_vision_proj(path)
        if num_selected is None:
            raise ValueError(f'{path}: a dense vision_proj (config.json has '
                             'no num_experts / num_selected); expected a '
                             'ChartMoE release with a MoE connector')
        return connector_from_reference({**state,
                                         'num_selected': num_selected},
                                        path, expert_names)
    if not osp.exists(path):
        raise FileNotFoundError(f'MoE connector not found: {path} (nor a '
                                'hub id in the local hub cache)')
    if osp.isdir(path):
        if not osp.isfile(osp.join(path, 'config.json')):
            raise ValueError(f'{path}: no config.json; expected a folder '
                             'written by chartmoe build-moe')
        moe = MoEProjectorModel(MoEProjectorConfig.from_pretrained(path))
        load_checkpoint(moe, load_hf_folder_state(path), path, strict=True)
        return moe
    return connector_from_reference(_read_torch_file(path), path,
                                    expert_names)


def write_reference(moe, path):
    """Write ``moe`` as ChartMoE's ``mlp_moe.pth`` to ``path`` (temporary
    file, then rename); returns the absolute path."""
    state = connector_to_reference(moe)
    path = osp.abspath(path)
    tmp = f'{path}.tmp{os.getpid()}'
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def export_reference(connector_dir, path):
    """Write the connector at ``connector_dir`` (any source
    :func:`load_connector` reads) as ChartMoE's ``mlp_moe.pth`` to
    ``path``; returns the path."""
    return write_reference(load_connector(connector_dir), path)
