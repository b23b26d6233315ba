"""IXC2 / ChartMoE training checkpoints -> the released ChartMoE layout.

ChartMoE (arXiv 2409.03277) is released as one InternLM-XComposer2 folder
(arXiv 2401.16420): IXC2's ``config.json`` plus ``num_experts`` /
``num_selected``, the weights under IXC2's key names (``model.*``,
``vit.*``, ``vision_proj.*``, ``output.weight``) with the SFT LoRA folded
into the LLM, the tokenizer and the model code (IDEA-FinAI/ChartMoE
``chartmoe/train/chartmoe_construction.py``). As for the LLaVA family, the
conversion takes two steps:

``pth_to_hf`` (``IXC2ChartMoEModel.to_hf`` -> :func:`save_ixc2_release`),
``save_format='xtuner'``: what training changed, in XTuner's way::

    vision_proj/          the MoE connector (``chartmoe build-moe`` folder:
                          weights + code), or
    mm_mlp.bin            the dense connector of an align stage, as
                          ChartMoE's trainer saves it (``vision_proj.{0,2}.
                          {weight,bias}``; ``chartmoe build-moe`` reads it)
    llm_adapter/          the LLM's LoRA as a PEFT adapter (SFT)
    chartmoe_ixc2_hf.json the base release, the parts above, the release
                          dtype (:data:`IXC2_HF_MANIFEST`)

XTuner's ``pth_to_hf`` builds the model on the meta device (accelerate's
``init_empty_weights``; :func:`~xtuner_chartmoe.families.ixc2.xtuner_model.
build_ixc2` reads no base weight there) and fills the trained parts from the
checkpoint: that is all this step reads.

``chartmoe merge HF_DIR SAVE_DIR`` (:func:`merge_ixc2_release`): the base
release with that connector and the LoRA folded in
(:func:`~.ixc2_lora.merge_lora`), written by :func:`write_released_folder`.
``save_format='huggingface'`` does both steps at once. Every folder is
written atomically.
"""
import json
import os.path as osp
import tempfile

import torch

from xtuner_chartmoe.fileio import atomic_directory, atomic_write_json
from xtuner_chartmoe.model import (CHARTMOE_EXPERT_NAMES, MoEProjectorModel,
                                   connector_to_reference, load_connector,
                                   load_dense_projector_state)
from xtuner_chartmoe.model.connector_formats import (ALIGN_FILE,
                                                     CONNECTOR_SUBDIR)

from . import ixc2_lora
from .ixc2_code import write_remote_code

IXC2_HF_MANIFEST = 'chartmoe_ixc2_hf.json'
LLM_ADAPTER = 'llm_adapter'
RELEASE_DTYPES = {False: torch.bfloat16, True: torch.float32}  # by fp32


def find_ixc2(model):
    """The ``IXC2ForCausalLM`` inside a training model."""
    from xtuner_chartmoe.families.ixc2 import IXC2ForCausalLM
    for module in model.modules():
        if isinstance(module, IXC2ForCausalLM):
            return module
    raise TypeError(f'{type(model).__name__} holds no IXC2ForCausalLM; '
                    'expected an IXC2 training model')


def _check_trained_parts(ixc2):
    """Training may change ``vision_proj`` and LoRA only: anything else has
    no place in this layout; each of them must hold data (``pth_to_hf``
    builds the model on the meta device and fills them from the
    checkpoint)."""
    other = [name for name, param in ixc2.named_parameters()
             if param.requires_grad and 'vision_proj.' not in name
             and '.lora_' not in name]
    if other:
        raise NotImplementedError(
            f'{len(other)} trained tensors outside vision_proj and the LoRA '
            f'(e.g. {other[:3]}); the IXC2 conversion writes the connector '
            'and the LoRA only')
    empty = [name for name, param in ixc2.named_parameters()
             if param.requires_grad and param.is_meta]
    if empty:
        raise ValueError(
            f'{len(empty)} trained tensors are not in the checkpoint (e.g. '
            f'{empty[:3]}); pth_to_hf builds the model without weights and '
            'takes them from the checkpoint')


def write_hf_layout(model, base, save_dir, dtype):
    """The ``xtuner`` layout of ``model`` (module docstring) into the new
    folder ``save_dir``; ``base``: the release it was trained from (folder
    or hub id), ``dtype``: that of the release :func:`merge_ixc2_release`
    will write."""
    ixc2 = find_ixc2(model)
    _check_trained_parts(ixc2)
    proj = ixc2.vision_proj
    manifest = {'base': base, 'torch_dtype': str(dtype).split('.')[-1],
                'llm_adapter': None}
    if isinstance(proj, MoEProjectorModel):
        proj.save_pretrained(osp.join(save_dir, CONNECTOR_SUBDIR))
        manifest['connector'] = CONNECTOR_SUBDIR
    else:
        torch.save({f'vision_proj.{k}': v.detach().clone()
                    for k, v in proj.state_dict().items()},
                   osp.join(save_dir, ALIGN_FILE))
        manifest['connector'] = ALIGN_FILE
    pairs = ixc2_lora.pairs_from_model(ixc2)
    if pairs:
        ixc2_lora.write_adapter(pairs, ixc2_lora.lora_config_of(ixc2, base),
                                osp.join(save_dir, LLM_ADAPTER))
        manifest['llm_adapter'] = LLM_ADAPTER
    atomic_write_json(osp.join(save_dir, IXC2_HF_MANIFEST), manifest)
    return save_dir


def base_release(cfg):
    """The release the model was trained from: ``cfg.model.llm.source``
    (a folder, made absolute, or a hub id)."""
    llm = cfg.model.get('llm')
    source = llm.get('source') if isinstance(llm, dict) else None
    if not isinstance(source, str):
        raise ValueError(
            f'cfg.model.llm.source is a {type(source).__name__}; the '
            'conversion needs the release the model was trained from (a '
            'folder or hub id) to merge into')
    return osp.abspath(source) if osp.isdir(source) else source


def read_ixc2_manifest(hf_dir):
    """The manifest of an IXC2 ``pth_to_hf`` output; errors name the file
    and what is missing."""
    path = osp.join(hf_dir, IXC2_HF_MANIFEST)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} missing; is {hf_dir} a pth_to_hf '
                                'output of an IXC2 training config?')
    with open(path) as f:
        manifest = json.load(f)
    for key in ('base', 'connector', 'torch_dtype'):
        if key not in manifest:
            raise ValueError(f'{path}: no {key!r}; expected the fields '
                             'pth_to_hf writes')
    for part in (manifest['connector'], manifest.get('llm_adapter')):
        if part and not osp.exists(osp.join(hf_dir, part)):
            raise FileNotFoundError(f'{osp.join(hf_dir, part)} missing; '
                                    f'{path} names it')
    return manifest


def release_connector(hf_dir, connector, config):
    """The state dict of the released ``vision_proj`` (keys without the
    prefix) from the ``connector`` of a ``pth_to_hf`` output; sets
    ``config.num_experts`` / ``num_selected`` to match (None: dense). A MoE
    connector's experts go in ChartMoE's order when they carry its roles."""
    path = osp.join(hf_dir, connector)
    if connector == ALIGN_FILE:
        config.num_experts = config.num_selected = None
        return {k[len('model.'):]: v for k, v in
                load_dense_projector_state(path).items()}
    moe = load_connector(path)
    cfg = moe.config
    expected = dict(router_type='softmax', depth=2, hidden_act='gelu',
                    bias=True, visual_hidden_size=config.vision_config[
                        'hidden_size'], llm_hidden_size=config.hidden_size)
    differ = {k: getattr(cfg, k) for k, v in expected.items()
              if getattr(cfg, k) != v}
    if differ:
        raise ValueError(f'{path}: {differ}; the released vision_proj is '
                         f"ChartMoE's MLPMoE ({expected})")
    state = (connector_to_reference(moe) if sorted(cfg.expert_names) ==
             sorted(CHARTMOE_EXPERT_NAMES) else moe.state_dict())
    config.num_experts, config.num_selected = cfg.num_experts, \
        cfg.num_selected
    return {k: v for k, v in state.items() if k != 'num_selected'}


def merge_ixc2_release(hf_dir, save_dir, device='cpu'):
    """The released layout (module docstring) in ``save_dir`` from the
    ``pth_to_hf`` output ``hf_dir``: its base release loaded in the
    manifest's dtype on ``device`` (``'auto'``: CUDA when there is one), the
    connector replaced, the LoRA folded in."""
    from xtuner_chartmoe.families.ixc2 import load_ixc2
    from xtuner_chartmoe.families.ixc2.modeling_ixc2 import build_vision_proj
    manifest = read_ixc2_manifest(hf_dir)
    dtype = getattr(torch, manifest['torch_dtype'])
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model, tokenizer, _ = load_ixc2(manifest['base'], torch_dtype=dtype,
                                    device=device)
    state = release_connector(hf_dir, manifest['connector'], model.config)
    proj = build_vision_proj(model.config).to(device=device, dtype=dtype)
    loaded = proj.load_state_dict(state, strict=False)
    misfit = loaded.unexpected_keys + [k for k in loaded.missing_keys
                                       if k != 'num_selected']
    if misfit:
        raise ValueError(f'{osp.join(hf_dir, manifest["connector"])}: '
                         f'{misfit[:4]} do not fit the released vision_proj')
    model.vision_proj = proj
    if manifest.get('llm_adapter'):
        adapter = osp.join(hf_dir, manifest['llm_adapter'])
        ixc2_lora.merge_lora(model, ixc2_lora.read_adapter(adapter), adapter)
    with atomic_directory(save_dir) as tmp:
        write_released_folder(model, tokenizer, tmp, dtype)
    return save_dir


def write_released_folder(model, tokenizer, folder, dtype):
    """Write ``model`` (an ``IXC2ForCausalLM``) as released into the
    existing ``folder``: weights and ``config.json`` through the family's
    :func:`~xtuner_chartmoe.families.ixc2.checkpoint.save_released` with
    ``auto_map`` naming this package's code (:mod:`.ixc2_code`), the
    tokenizer, and ``generation_config.json`` with ChartMoE's greedy
    decoding and stop tokens."""
    from transformers import GenerationConfig

    from xtuner_chartmoe.families.ixc2.chartmoe_protocol import (
        GENERATION, STOP_TOKEN_IDS)
    from xtuner_chartmoe.families.ixc2.checkpoint import save_released
    save_released(model, folder, dtype)
    config_path = osp.join(folder, 'config.json')
    with open(config_path) as f:
        config = json.load(f)
    config['auto_map'] = write_remote_code(folder)
    atomic_write_json(config_path, config, indent=2)
    tokenizer.save_pretrained(folder)
    GenerationConfig(
        bos_token_id=model.config.bos_token_id,
        pad_token_id=model.config.pad_token_id,
        eos_token_id=list(STOP_TOKEN_IDS),
        **{k: v for k, v in GENERATION.items() if k != 'max_new_tokens'}
    ).save_pretrained(folder)
    return folder


def save_ixc2_release(model, cfg, save_dir, fp32=False, save_format='xtuner'):
    """``pth_to_hf`` of an IXC2 training model (module docstring):
    ``'xtuner'`` writes what training changed and the manifest,
    ``'huggingface'`` the released layout at once; ``fp32``: the release in
    float32 instead of bfloat16 (ChartMoE's released dtype)."""
    if save_format not in ('xtuner', 'huggingface'):
        raise NotImplementedError(
            f"save_format={save_format!r}: an IXC2 model converts to 'xtuner'"
            " (then chartmoe merge) or 'huggingface' (the released layout)")
    base = base_release(cfg)
    dtype = RELEASE_DTYPES[bool(fp32)]
    if save_format == 'xtuner':
        with atomic_directory(save_dir) as tmp:
            write_hf_layout(model, base, tmp, dtype)
        return save_dir
    with tempfile.TemporaryDirectory(dir=osp.dirname(osp.abspath(
            save_dir))) as staging:
        write_hf_layout(model, base, staging, dtype)
        return merge_ixc2_release(staging, save_dir)
