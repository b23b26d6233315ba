"""The SFT LoRA of IXC2's LLM: read it, write it as a PEFT adapter, fold it.

ChartMoE's SFT (arXiv 2409.03277; IDEA-FinAI/ChartMoE
``chartmoe/train/train.py``) puts a PEFT LoRA (r 64, alpha 64) on the five
Partial-LoRA linears of every decoder layer (``attention.wqkv``,
``attention.wo``, ``feed_forward.w1/w2/w3``); its
``chartmoe_construction.py`` folds it into their base weights with
``merge_and_unload``, leaving IXC2's own ``Plora_A`` / ``Plora_B`` (arXiv
2401.16420) as they are. :func:`merge_lora` does the same fold exactly:
``W' = W + (B @ A) * scaling``, computed in float32 and rounded once to the
weight's dtype.

A LoRA here is ``{weight key of IXC2ForCausalLM: LoRAPair}``, the key as in
the released state dict (``model.layers.N.attention.wqkv.weight``).
"""
import json
import math
import os.path as osp
import re
from typing import NamedTuple

import torch

ADAPTER_CONFIG = 'adapter_config.json'
ADAPTER_WEIGHTS = ('adapter_model.safetensors', 'adapter_model.bin')
# PEFT's names of the LoRA matrices of one target (in a module's state dict
# with the adapter name, in an adapter file without it).
LORA_KEY = re.compile(
    r'(?:^|\.)(model\.layers\.\d+\.(?:attention\.(?:wqkv|wo)|'
    r'feed_forward\.w[123]))(?:\.base_layer)?\.lora_([AB])(?:\.[\w-]+)?'
    r'\.weight$')
# Where PEFT puts IXC2ForCausalLM's own keys in an adapter file.
PEFT_PREFIX = 'base_model.model.'


class LoRAPair(NamedTuple):
    """One target's LoRA: ``A [r, in]``, ``B [out, r]``, ``scaling``
    (``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA)."""
    A: torch.Tensor
    B: torch.Tensor
    scaling: float


def pairs_from_state(state, scaling, source):
    """``{weight key: LoRAPair}`` from LoRA tensors named as PEFT names them
    (``...model.layers.N.attention.wqkv.lora_A[.default].weight``), one
    ``scaling`` for all. Any other key, or an A without its B, is an error
    naming ``source``."""
    found, other = {}, []
    for key, value in state.items():
        match = LORA_KEY.search(key)
        if match is None:
            other.append(key)
            continue
        found.setdefault(match.group(1) + '.weight', {})[match.group(2)] = \
            value
    if other:
        raise ValueError(
            f'{source}: not LoRA tensors of the five IXC2 decoder linears '
            f'(attention.wqkv/wo, feed_forward.w1/w2/w3): {other[:4]}')
    unpaired = sorted(k for k, v in found.items() if len(v) != 2)
    if unpaired:
        raise ValueError(f'{source}: lora_A without lora_B (or the other '
                         f'way) for {unpaired[:4]}')
    return {k: LoRAPair(v['A'], v['B'], scaling)
            for k, v in sorted(found.items())}


def pairs_from_model(model):
    """``{weight key: LoRAPair}`` of every PEFT LoRA layer in ``model`` (a
    live module holding IXC2's decoder with LoRA on its linears), for its
    active adapter."""
    from peft.tuners.lora import LoraLayer
    pairs = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        match = LORA_KEY.search(f'{name}.lora_A.weight')
        if match is None:
            raise ValueError(f'LoRA on {name}: only the five decoder '
                             'linears of IXC2 have a place in its release')
        adapter = module.active_adapters[0]
        if module.use_dora.get(adapter):
            raise ValueError(f'{name}: DoRA cannot be folded as W + BA')
        pairs[match.group(1) + '.weight'] = LoRAPair(
            module.lora_A[adapter].weight, module.lora_B[adapter].weight,
            float(module.scaling[adapter]))
    return dict(sorted(pairs.items()))


def lora_config_of(model, base):
    """The ``peft.LoraConfig`` of ``model``'s LoRA layers (one rank, alpha,
    dropout and scaling rule for all, as ChartMoE's SFT has) for an adapter
    of the base release ``base`` (folder or hub id)."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer
    settings, targets = set(), set()
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            adapter = module.active_adapters[0]
            r, alpha = module.r[adapter], module.lora_alpha[adapter]
            dropout = getattr(module.lora_dropout[adapter], 'p', 0.0)
            settings.add((r, alpha, dropout,
                          module.scaling[adapter] != alpha / r))
            targets.add(name.split('.')[-1])
    if len(settings) != 1:
        raise ValueError(f'LoRA settings (r, alpha, dropout, rsLoRA) '
                         f'{sorted(settings)}: an adapter file holds one')
    r, alpha, dropout, rslora = settings.pop()
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                      use_rslora=rslora, bias='none',
                      target_modules=sorted(targets),
                      base_model_name_or_path=base)


def write_adapter(pairs, lora_config, folder):
    """A PEFT adapter folder of ``pairs`` (``adapter_config.json`` from
    ``lora_config``, a ``peft.LoraConfig`` whose ``base_model_name_or_path``
    names the base, and ``adapter_model.safetensors`` under PEFT's keys for
    IXC2ForCausalLM), loadable by ``PeftModel.from_pretrained``."""
    from safetensors.torch import save_file
    state = {}
    for key, pair in pairs.items():
        stem = PEFT_PREFIX + key[:-len('.weight')]
        state[stem + '.lora_A.weight'] = pair.A.detach().contiguous()
        state[stem + '.lora_B.weight'] = pair.B.detach().contiguous()
    lora_config.save_pretrained(folder)
    save_file(state, osp.join(folder, ADAPTER_WEIGHTS[0]),
              metadata={'format': 'pt'})


def read_adapter(folder):
    """``{weight key: LoRAPair}`` of a PEFT adapter folder (plain LoRA: no
    DoRA, no per-module rank or alpha, no ``fan_in_fan_out``)."""
    path = osp.join(folder, ADAPTER_CONFIG)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: missing; expected a PEFT LoRA '
                                'adapter folder')
    with open(path) as f:
        config = json.load(f)
    for field, plain in (('peft_type', 'LORA'), ('use_dora', False),
                         ('fan_in_fan_out', False), ('rank_pattern', {}),
                         ('alpha_pattern', {})):
        if config.get(field, plain) not in (plain, None):
            raise ValueError(f'{path}: {field}={config[field]!r}; the merge '
                             f'folds plain LoRA only ({field}={plain!r})')
    if not {'r', 'lora_alpha'} <= set(config):
        raise ValueError(f'{path}: no r / lora_alpha; expected a PEFT LoRA '
                         'adapter config')
    r, alpha = config['r'], config['lora_alpha']
    scaling = alpha / (math.sqrt(r) if config.get('use_rslora') else r)
    for name in ADAPTER_WEIGHTS:
        weights = osp.join(folder, name)
        if osp.isfile(weights):
            break
    else:
        raise FileNotFoundError(f'{folder}: no adapter weights; expected '
                                f'one of {list(ADAPTER_WEIGHTS)}')
    if name.endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(weights)
    else:
        state = torch.load(weights, map_location='cpu', weights_only=True)
    return pairs_from_state(state, scaling, weights)


@torch.no_grad()
def merge_lora(model, pairs, source):
    """Fold ``pairs`` into ``model`` (an ``IXC2ForCausalLM``) in place:
    ``W = (W.float() + (B.float() @ A.float()) * scaling).to(W.dtype)``
    for every target weight ``W [out, in]``; the Partial LoRA is not
    touched. A key or shape that does not fit is an error naming
    ``source``."""
    params = dict(model.named_parameters())
    for key, pair in pairs.items():
        weight = params.get(key)
        if weight is None:
            raise ValueError(f'{source}: LoRA for {key}, which the model '
                             'does not have')
        if (pair.B.shape[0], pair.A.shape[1]) != tuple(weight.shape) or \
                pair.B.shape[1] != pair.A.shape[0]:
            raise ValueError(
                f'{source}: LoRA of {key} has A {tuple(pair.A.shape)}, B '
                f'{tuple(pair.B.shape)}; the weight is {tuple(weight.shape)}')
        delta = (pair.B.float() @ pair.A.float()) * pair.scaling
        weight.copy_((weight.float() + delta).to(weight.dtype))
    return model
