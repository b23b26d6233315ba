"""Offline stand-ins of the released IXC2 and ChartMoE checkpoints.

:func:`build_ixc2_standins` writes a Hugging Face hub cache holding, under
the real repository ids, folders laid out like the releases: IXC2-VL-7B's
``config.json`` values (real widths unless overridden, the depth cut),
random weights under the released key names and shapes (``model.*`` with
Partial LoRA, ``vit.vision_tower.*`` with the 1226-row position table made
from a 336-px table as IXC2 does, ``vision_proj.*`` dense or ChartMoE's
``gate`` / ``experts.N``, ``output.weight``), safetensors or ``.bin``,
sharded with an index when large; a tokenizer with the real ids of
``<s>`` (1), ``</s>`` (2), ``[UNUSED_TOKEN_145]`` (92542) and
``[UNUSED_TOKEN_146]`` (92543) loaded through the folder's own tokenizer
code (``auto_map``) as the releases do; and remote model code that refuses
to run (the loader must never import it).

:func:`build_on_meta` builds the full-size models on the meta device for
their parameter counts (:func:`parameter_counts`).
"""
import json
import os
import os.path as osp
import shutil

import torch

from ...devkit.standin import add_to_hub_cache, build_internlm2_tokenizer
from ...evaluation.chartmoe_reference import (POT_INSTRUCTIONS,
                                              SHORT_ANSWER_INSTRUCTION)
from .checkpoint import save_released
from .configuration_ixc2 import IXC2_VL_7B, IXC2Config
from .modeling_ixc2 import IXC2ForCausalLM
from .modeling_vision import interpolate_position_table
from .sequence import META_INSTRUCTION

IXC2_REPO = 'internlm/internlm-xcomposer2-vl-7b'
IXC2_ENHANCED_REPO = 'Coobiw/InternLM-XComposer2_Enhanced'
CHARTMOE_REPO = 'IDEA-FinAI/chartmoe'
CHARTMOE_REPRODUCED_REPO = 'Coobiw/ChartMoE_Reproduced'
# Each release and whether its connector is ChartMoE's MoE (4 experts,
# top-2).
RELEASES = {IXC2_REPO: False, IXC2_ENHANCED_REPO: False, CHARTMOE_REPO: True,
            CHARTMOE_REPRODUCED_REPO: True}
CHARTMOE_MOE = dict(num_experts=4, num_selected=2)
# InternLM2's tokens 92538..92543 as IXC2's tokenizer spells them.
CHAT_TOKEN_NAMES = {92538 + i: f'[UNUSED_TOKEN_{141 + i}]' for i in range(6)}
CLIP_336_GRID = 24  # the 336-px table IXC2 starts from: 24x24 + CLS
TOKENIZER_CODE = '''"""Stand-in of the release's tokenizer code (auto_map)."""
from transformers import PreTrainedTokenizerFast


class InternLMXComposer2Tokenizer(PreTrainedTokenizerFast):
    """Reads the folder's tokenizer.json."""
'''
REFUSING_CODE = '''raise ImportError(
    "stand-in of the release's remote {} code: "
    "xtuner_chartmoe's loader must never import it")
'''


def ixc2_config(llm_layers=None, vision_layers=None, chartmoe=False,
                **overrides):
    """IXC2-VL-7B's configuration (ChartMoE's with ``chartmoe``), depths
    cut where given, other fields from ``overrides`` (``vision_config``
    entries are merged)."""
    values = {k: v for k, v in IXC2_VL_7B.items() if k not in (
        'architectures', 'auto_map', 'model_type', 'torch_dtype',
        'max_length', 'use_cache')}
    if chartmoe:
        values.update(CHARTMOE_MOE)
    if llm_layers:
        values['num_hidden_layers'] = llm_layers
    vision = dict(overrides.pop('vision_config', {}))
    if vision_layers:
        vision['num_hidden_layers'] = vision_layers
    return IXC2Config(**{**values, **overrides}, vision_config=vision)


def build_ixc2_tokenizer(save_dir, texts=None):
    """A fast tokenizer with IXC2's special tokens at their ids in the
    92544-token vocabulary (``xtuner_chartmoe.devkit.standin``'s InternLM2
    stand-in tokenizer with the chat tokens spelled ``[UNUSED_TOKEN_14x]``)
    and the release's ``auto_map`` tokenizer code, saved to ``save_dir``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    texts = list(texts or ()) + [
        SHORT_ANSWER_INSTRUCTION, *POT_INSTRUCTIONS, META_INSTRUCTION,
        'system user assistant\n', 'What is the highest value in the chart?',
        'print(max([12.5, 3, 45]))', 'Yes No True False 0123456789 %,.']
    staging = save_dir + '.internlm2'
    base = build_internlm2_tokenizer(texts, staging, bpe_size=1000)
    shutil.rmtree(staging)
    spec = json.loads(base.backend_tokenizer.to_str())
    for token in spec['added_tokens']:
        token['content'] = CHAT_TOKEN_NAMES.get(token['id'], token['content'])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token='<s>', eos_token='</s>', unk_token='<unk>', pad_token='</s>',
        additional_special_tokens=list(CHAT_TOKEN_NAMES.values()))
    tokenizer.save_pretrained(save_dir)
    path = osp.join(save_dir, 'tokenizer_config.json')
    with open(path) as f:
        config = json.load(f)
    config.update(tokenizer_class='InternLMXComposer2Tokenizer', auto_map={
        'AutoTokenizer': [('tokenization_internlm_xcomposer2.'
                           'InternLMXComposer2Tokenizer'), None]})
    with open(path, 'w') as f:
        json.dump(config, f, indent=2)
    with open(osp.join(save_dir, 'tokenization_internlm_xcomposer2.py'),
              'w') as f:
        f.write(TOKENIZER_CODE)
    return tokenizer


def random_tensor(shape, dtype, std=0.02, block=(1 << 20) + 7):
    """Normal(0, std) values of ``shape``: one random block of ``block``
    values (an odd length, so rows do not repeat in step) tiled over large
    tensors, which makes real-width stand-ins quick to build."""
    numel = torch.Size(shape).numel()
    values = (torch.randn(min(numel, block)) * std).to(dtype)
    if numel > block:
        values = values.repeat(-(-numel // block))[:numel]
    return values.view(shape)


def random_model(config, seed=0, dtype=torch.bfloat16):
    """``IXC2ForCausalLM(config)`` with random weights in ``dtype``
    (:func:`random_tensor`; norms one, biases zero), its position table made
    from a 336-px CLIP table as IXC2 does
    (:func:`~.modeling_vision.interpolate_position_table`)."""
    from accelerate import init_empty_weights
    torch.manual_seed(seed)
    with init_empty_weights():  # parameters on meta, buffers real
        model = IXC2ForCausalLM(config)
    grid = config.img_size // config.vision_config['patch_size']
    for name, param in list(model.named_parameters()):
        module_name, _, attr = name.rpartition('.')
        if attr == 'bias':
            value = torch.zeros(param.shape, dtype=dtype)
        elif param.dim() == 1 and 'norm' in module_name:
            value = torch.ones(param.shape, dtype=dtype)
        elif name.endswith('position_embedding.weight'):
            value = interpolate_position_table(random_tensor(
                (CLIP_336_GRID ** 2 + 1, param.shape[1]), dtype), grid)
        else:
            value = random_tensor(param.shape, dtype)
        setattr(model.get_submodule(module_name), attr,
                torch.nn.Parameter(value, param.requires_grad))
    return model


def write_release(folder, config, tokenizer_dir, seed=0,
                  dtype=torch.bfloat16, safe_serialization=True,
                  max_shard_size='5GB'):
    """A release folder for ``config``: weights (:func:`random_model`,
    :func:`~.checkpoint.save_released`), the tokenizer files of
    ``tokenizer_dir`` and remote model code that refuses to run."""
    model = random_model(config, seed, dtype)
    save_released(model, folder, dtype, safe_serialization, max_shard_size)
    del model
    for name in os.listdir(tokenizer_dir):
        shutil.copy(osp.join(tokenizer_dir, name), folder)
    for name in IXC2_VL_7B['auto_map'].values():
        module = name.split('.')[0]
        with open(osp.join(folder, module + '.py'), 'w') as f:
            f.write(REFUSING_CODE.format(module))
    return folder


def build_ixc2_standins(out_dir, llm_layers=1, vision_layers=1,
                        repos=tuple(RELEASES), dtype=torch.bfloat16,
                        safe_serialization=True, max_shard_size='5GB',
                        **overrides):
    """Stand-ins of the ``repos`` (of :data:`RELEASES`) in
    ``out_dir/hf_cache`` under their real ids. Real widths unless
    ``overrides`` (e.g. ``hidden_size=64``, ``vision_config={...}``) say
    otherwise. Returns ``{'hf_cache': path, repo: snapshot folder}``; run
    with ``HF_HUB_CACHE=<out_dir>/hf_cache HF_HUB_OFFLINE=1`` (or pass
    ``cache_dir``) to load them by id."""
    out_dir = osp.abspath(out_dir)
    cache = osp.join(out_dir, 'hf_cache')
    staging = osp.join(out_dir, 'staging')
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer_dir = osp.join(staging, 'tokenizer')
    build_ixc2_tokenizer(tokenizer_dir)
    paths = {'hf_cache': cache}
    for seed, repo in enumerate(repos):
        config = ixc2_config(llm_layers, vision_layers, RELEASES[repo],
                             **overrides)
        folder = write_release(osp.join(staging, repo.replace('/', '--')),
                               config, tokenizer_dir, seed, dtype,
                               safe_serialization, max_shard_size)
        paths[repo] = add_to_hub_cache(cache, repo, folder)
    shutil.rmtree(staging)
    return paths


def build_on_meta(chartmoe=False):
    """Full-size IXC2-VL-7B (ChartMoE with ``chartmoe``) on the meta
    device: no memory, for parameter counts."""
    with torch.device('meta'):
        return IXC2ForCausalLM(ixc2_config(chartmoe=chartmoe))


def parameter_counts(model):
    """``{'total', 'llm', 'plora', 'vit', 'position_table', 'vision_proj',
    'output'}`` parameter counts (``llm``: ``model.*`` including the
    Partial LoRA, which ``plora`` counts alone)."""
    counts = {'total': 0, 'llm': 0, 'plora': 0, 'vit': 0, 'vision_proj': 0,
              'output': 0}
    for name, param in model.named_parameters():
        part = 'llm' if name.startswith('model.') else name.split('.')[0]
        counts[part] += param.numel()
        counts['total'] += param.numel()
        if '.Plora_' in name:
            counts['plora'] += param.numel()
        if name.endswith('position_embedding.weight'):
            counts['position_table'] = param.numel()
    return counts


def stage_counts(config_path):
    """Full-size parameter counts of an IXC2 stage config
    (``IXC2ChartMoEModel``), built on the meta device as the config says
    (freezing, LoRA) with IXC2-VL-7B's architecture in place of the
    release it names (ChartMoE's MoE connector when the config has
    ``moe_projector``; no checkpoint, no quantization: a QLoRA config then
    counts as its LoRA model). Returns ``{'total', 'trainable',
    'vision_proj', 'lora'}`` (trainable ones for the last two)."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER
    cfg = Config.fromfile(config_path)
    if 'model' not in cfg:
        raise ValueError(f'{config_path}: no model; expected an IXC2 stage '
                         'config')
    model_cfg = dict(cfg.model)
    model_cfg.pop('pretrained_pth', None)
    llm = dict(model_cfg['llm'])
    llm.pop('quantization_config', None)
    llm['source'] = ixc2_config(
        chartmoe=model_cfg.pop('moe_projector', None) is not None)
    model_cfg['llm'] = llm
    with torch.device('meta'):
        model = BUILDER.build(model_cfg)
    counts = {'total': 0, 'trainable': 0, 'vision_proj': 0, 'lora': 0}
    for name, param in model.named_parameters():
        counts['total'] += param.numel()
        if param.requires_grad:
            counts['trainable'] += param.numel()
            part = ('vision_proj' if '.vision_proj.' in f'.{name}' else
                    'lora' if '.lora_' in name else None)
            if part:
                counts[part] += param.numel()
    return counts
