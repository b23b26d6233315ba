"""Build, load, import and export the MoE connector (ChartMoE, arXiv
2409.03277, §3.2).

Build modes (paper baselines), from dense projector checkpoints:
- ``diverse``: one projector per expert (general, table, json, code).
- ``upcycle``: the general projector copied into every expert.
- ``random``:  fresh experts (PyTorch init), sizes from a reference projector
  or given explicitly.
The router is always fresh.

ChartMoE's own connector file (``moe_construction.py`` of the reference code
saves ``mlp_moe.pth``: ``gate.weight [E, Dv]``, ``experts.{i}.{0,2}.*`` and
``num_selected`` as a plain int; experts in the order general, table, json,
code) is read by :func:`connector_from_reference` and written by
:func:`connector_to_reference`; :func:`load_connector` takes either format.
"""
import os
import os.path as osp
import re

import torch

from ..run_log import last_checkpoint
from .checkpoint import load_checkpoint
from .configuration_moe_projector import MoEProjectorConfig
from .modeling_moe_projector import MoEProjectorModel

CHARTMOE_EXPERT_NAMES = ('general', 'table', 'json', 'code')
_DENSE_KEY = re.compile(r'^model\.(\d+)\.(weight|bias)$')
_EXPERT_LINEAR = re.compile(r'^experts\.0\.(\d+)\.weight$')


def _strip_to_dense_keys(state_dict, source):
    """Keep ``model.{i}.{weight,bias}`` of a dense projector, dropping the
    ``projector.`` prefix of whole-model (LLaVA) checkpoints."""
    dense = {}
    for key, value in state_dict.items():
        key = key[len('projector.'):] if key.startswith('projector.') else key
        if _DENSE_KEY.match(key):
            dense[key] = value
    if not dense:
        sample = ', '.join(list(state_dict)[:5])
        raise ValueError(
            f'{source}: no dense projector weights found; expected keys '
            f"'model.<i>.weight' or 'projector.model.<i>.weight', got "
            f'[{sample}{", ..." if len(state_dict) > 5 else ""}]')
    return dense


def load_dense_projector_state(path):
    """Read a dense projector's weights from ``path``.

    Accepts an XTuner ``projector/`` folder (``save_pretrained``), a training
    checkpoint (``iter_*.pth`` file or DeepSpeed folder, whole-model keys), a
    training work dir (its ``last_checkpoint``) or a plain state dict file.
    Returns ``{'model.0.weight': ..., ...}``.
    """
    if not osp.exists(path):
        raise FileNotFoundError(f'projector checkpoint not found: {path}')
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


def load_hf_folder_state(path):
    """The full state dict of a ``save_pretrained`` folder (safetensors or
    bin, single file or sharded with an index)."""
    import json
    from safetensors.torch import load_file
    for weights, index, load in (
            ('model.safetensors', 'model.safetensors.index.json', load_file),
            ('pytorch_model.bin', 'pytorch_model.bin.index.json',
             lambda f: torch.load(f, map_location='cpu', weights_only=True))):
        if osp.isfile(osp.join(path, weights)):
            return load(osp.join(path, weights))
        if osp.isfile(osp.join(path, index)):
            with open(osp.join(path, index)) as f:
                shards = sorted(set(json.load(f)['weight_map'].values()))
            state = {}
            for shard in shards:
                state.update(load(osp.join(path, shard)))
            return state
    raise FileNotFoundError(
        f'{path}: no model.safetensors / pytorch_model.bin (or sharded index)')


def _dense_geometry(state, source):
    """(visual_hidden, llm_hidden, depth, bias) of a dense projector."""
    layer_ids = sorted({int(_DENSE_KEY.match(k).group(1)) for k in state})
    expected_ids = list(range(0, 2 * len(layer_ids) - 1, 2))
    if layer_ids != expected_ids:
        raise ValueError(f'{source}: projector layers {layer_ids}, expected '
                         f'Linear layers at {expected_ids}')
    first = state['model.0.weight']
    return (first.shape[1], first.shape[0], len(layer_ids),
            'model.0.bias' in state)


def _check_same_geometry(states, sources):
    reference = {k: tuple(v.shape) for k, v in states[0].items()}
    for state, source in zip(states[1:], sources[1:]):
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        if shapes != reference:
            diff = sorted(set(shapes.items()) ^ set(reference.items()))
            raise ValueError(
                f'{source}: expert shapes differ from {sources[0]}: '
                f'{diff[:4]} (every expert must have the general projector\'s '
                f'keys and shapes {sorted(reference.items())})')


def build_moe_projector(mode,
                        expert_projectors=(),
                        num_experts=4,
                        num_selected=2,
                        router_type='softmax',
                        router_kwargs=None,
                        expert_names=None,
                        visual_hidden_size=None,
                        llm_hidden_size=None,
                        depth=2,
                        seed=0):
    """Return a :class:`MoEProjectorModel` built in ``mode``.

    ``expert_projectors``: paths readable by
    :func:`load_dense_projector_state`. ``diverse`` needs one per expert
    (``num_experts`` is then their count), ``upcycle`` exactly one, ``random``
    none (give the sizes) or one to copy the sizes from.
    """
    sources = [os.fspath(p) for p in expert_projectors]
    if mode == 'diverse':
        if len(sources) < 2:
            raise ValueError('mode diverse needs one projector per expert '
                             f'(>= 2), got {len(sources)}')
        num_experts = len(sources)
    elif mode == 'upcycle' and len(sources) != 1:
        raise ValueError('mode upcycle needs exactly one (the general) '
                         f'projector, got {len(sources)}')
    elif mode == 'random' and len(sources) > 1:
        raise ValueError('mode random takes at most one reference projector')
    elif mode not in ('diverse', 'upcycle', 'random'):
        raise ValueError(f"unknown mode {mode!r}; expected 'diverse', "
                         "'upcycle' or 'random'")

    states = [load_dense_projector_state(p) for p in sources]
    if states:
        _check_same_geometry(states, sources)
        visual_hidden_size, llm_hidden_size, depth, bias = _dense_geometry(
            states[0], sources[0])
    else:
        bias = True
        if not (visual_hidden_size and llm_hidden_size):
            raise ValueError('mode random without a reference projector needs '
                             'visual_hidden_size and llm_hidden_size')
    if expert_names is None and mode != 'diverse':
        expert_names = [f'expert_{i}' for i in range(num_experts)]
    config = MoEProjectorConfig(
        visual_hidden_size=visual_hidden_size, llm_hidden_size=llm_hidden_size,
        depth=depth, bias=bias, num_experts=num_experts,
        num_selected=num_selected, router_type=router_type,
        router_kwargs=router_kwargs,
        expert_names=expert_names_for(num_experts, expert_names))
    torch.manual_seed(seed)
    moe = MoEProjectorModel(config)
    if mode == 'upcycle':
        states = states * num_experts
    if mode != 'random':
        for expert, state, source in zip(moe.experts, states,
                                         sources * num_experts):
            load_checkpoint(expert, {k[len('model.'):]: v
                                     for k, v in state.items()}, source,
                            strict=True)
    return moe


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
                         f'needs exactly the roles {list(order)}')
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
    code) or ChartMoE's ``mlp_moe.pth``. Every tensor must find its place;
    errors name the file and the keys."""
    if not osp.exists(path):
        raise FileNotFoundError(f'MoE connector not found: {path}')
    if osp.isdir(path):
        if not osp.isfile(osp.join(path, 'config.json')):
            raise ValueError(f'{path}: no config.json; expected a folder '
                             'written by tools/build_moe_connector.py')
        moe = MoEProjectorModel(MoEProjectorConfig.from_pretrained(path))
        load_checkpoint(moe, load_hf_folder_state(path), path, strict=True)
        return moe
    return connector_from_reference(_read_torch_file(path), path,
                                    expert_names)


def export_reference(connector_dir, path):
    """Write the connector at ``connector_dir`` as ChartMoE's
    ``mlp_moe.pth`` to ``path`` (temporary file, then rename); returns the
    path."""
    state = connector_to_reference(load_connector(connector_dir))
    path = osp.abspath(path)
    tmp = f'{path}.tmp{os.getpid()}'
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path
