"""Load a checkpoint into a model with its keys mapped, checked and reported.

Every checkpoint load of the plugin goes through :func:`load_checkpoint`. A
checkpoint key reaches a model key

1. as is;
2. through a PEFT wrapper: ``llm.X.weight`` fills
   ``llm.base_model.model.X[.base_layer].weight`` (a full-LLM checkpoint, e.g.
   of the pre-finetune, into a LoRA model);
3. by upcycling a dense layer into every expert of a MoE layer:
   ``projector.model.R`` fills ``projector.experts.{i}.R`` (the connector)
   and ``...mlp.R`` fills ``...mlp.experts.{i}.R`` (CuMo's CLIP MoE).

The load stops with a ``ValueError`` naming the file and keys of both sides
when no tensor matches, and when it fills part of a module but leaves some
of that module's trainable tensors unfilled, other than new structure that
starts fresh on purpose (the routers of upcycled layers, LoRA adapters the
checkpoint has none of). Otherwise it returns a :class:`LoadReport` with the
counts. :func:`load_hf_folder_state` reads the state dict of any
``save_pretrained`` folder.
"""
import json
import os.path as osp
import re
from dataclasses import dataclass, field

import torch

_PEFT = re.compile(r'base_model\.model\.|\.base_layer(?=\.)')
_UPCYCLED = (
    (re.compile(r'^(.*projector)\.experts\.\d+\.'), r'\1.model.'),
    (re.compile(r'^(.*\.mlp)\.experts\.\d+\.'), r'\1.'),
)


def load_hf_folder_state(path):
    """The full state dict of a ``save_pretrained`` folder (safetensors or
    bin, single file or sharded with an index)."""
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


def _candidates(model_key):
    """Checkpoint keys that may fill ``model_key``, best first."""
    yield model_key
    unwrapped = _PEFT.sub('', model_key)
    yield unwrapped
    for pattern, dense in _UPCYCLED:
        if pattern.match(unwrapped):
            yield pattern.sub(dense, unwrapped)


def summarise_keys(keys, n=8):
    """``keys`` in short: indices that vary become ``*`` (``experts.*.0.bias``),
    at most ``n`` patterns, and the count."""
    patterns = {}
    for key in sorted(keys):
        patterns.setdefault(re.sub(r'(?<=\.)\d+(?=\.)', '*', key),
                            []).append(key)
    shown = [members[0] if len(members) == 1 else pattern
             for pattern, members in patterns.items()]
    more = ', ...' if len(shown) > n else ''
    return f'{", ".join(shown[:n])}{more} ({len(keys)} in all)'


def _hint(state_dict):
    """Advice for a checkpoint of a known other format."""
    if 'gate.weight' in state_dict and any(k.startswith('experts.')
                                           for k in state_dict):
        return (' This is a bare MoE connector (e.g. ChartMoE\'s '
                'mlp_moe.pth): load it with moe_projector=dict(pretrained='
                'FILE), or convert it with `chartmoe build-moe import`.')
    return ''


def _group(key, depth):
    return '.'.join(key.split('.')[:depth])


@dataclass
class LoadReport:
    """What a load did: ``filled`` model tensors from ``used`` of the
    ``total`` checkpoint tensors; ``unused`` checkpoint keys; ``fresh``
    model tensors left at their initial values on purpose."""
    source: str
    filled: int
    used: int
    total: int
    unused: list = field(default_factory=list)
    fresh: list = field(default_factory=list)

    def summary(self):
        text = (f'{self.source}: loaded {self.used} of {self.total} checkpoint '
                f'tensors into {self.filled} model tensors')
        if self.unused:
            text += f'; unused: {summarise_keys(self.unused)}'
        if self.fresh:
            text += f'; starting fresh: {summarise_keys(self.fresh)}'
        return text


def load_checkpoint(module, state_dict, source, strict=False, group_depth=1):
    """Fill ``module`` from ``state_dict`` (see the module docstring).

    ``strict``: every model tensor must be filled and every checkpoint tensor
    used (a whole connector). ``group_depth``: key components that name a
    module for the "partly filled" check (1: ``llm`` / ``visual_encoder`` /
    ``projector``). Returns a :class:`LoadReport`.
    """
    model_state = module.state_dict()
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    mapping = {}
    for model_key in model_state:
        for candidate in _candidates(model_key):
            if candidate in state_dict:
                mapping[model_key] = candidate
                break
    if not mapping:
        raise ValueError(
            f'{source}: no tensor of the checkpoint matches the model. '
            f'Checkpoint keys: [{summarise_keys(state_dict)}]; model keys: '
            f'[{summarise_keys(model_state)}].{_hint(state_dict)}')
    unfilled = set(model_state) - set(mapping)
    used = set(mapping.values())
    unused = sorted(set(state_dict) - used)
    if strict and (unfilled or unused):
        raise ValueError(
            f'{source}: does not match the model one to one; model tensors '
            f'not in the checkpoint: [{summarise_keys(unfilled)}]; checkpoint '
            f'tensors the model has no place for: [{summarise_keys(unused)}]')
    touched = {_group(k, group_depth) for k in mapping}
    upcycled = {k for k, v in mapping.items() if k != v and '.experts.' in k}
    upcycled_layers = {k.split('.experts.')[0] for k in upcycled}
    fresh, missing = [], []
    for key in sorted(unfilled & trainable):
        if _group(key, group_depth) not in touched:
            continue
        new_router = any(key.startswith(layer + '.gate.')
                         for layer in upcycled_layers)
        new_adapter = 'lora_' in key and not any('lora_' in k for k in used)
        (fresh if new_router or new_adapter else missing).append(key)
    if missing:
        raise ValueError(
            f'{source}: fills part of {sorted(touched)} but leaves trainable '
            f'tensors unfilled: [{summarise_keys(missing)}]; checkpoint keys: '
            f'[{summarise_keys(state_dict)}]')
    try:
        module.load_state_dict(
            {k: state_dict[v] for k, v in mapping.items()}, strict=False)
    except RuntimeError as err:  # shapes differ
        raise ValueError(f'{source}: {err}') from None
    return LoadReport(source, len(mapping), len(used), len(state_dict),
                      unused, fresh)
