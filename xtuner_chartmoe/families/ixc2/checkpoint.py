"""Read and write IXC2 / ChartMoE checkpoints as they are on disk.

A released folder (``internlm/internlm-xcomposer2-vl-7b``,
``IDEA-FinAI/chartmoe``, ``Coobiw/ChartMoE_Reproduced``,
``Coobiw/InternLM-XComposer2_Enhanced``, or a local copy) holds
``config.json``, the tokenizer and the weights under their own key names
(``model.*``, ``vit.vision_tower.*``, ``vision_proj.*``, ``output.weight``)
in ``model.safetensors`` / ``pytorch_model.bin``, single or sharded with an
``*.index.json``, in fp16, bf16 or fp32. :func:`load_ixc2` builds our model
from ``config.json`` (read as data: the folder's remote model code is never
run), checks every key and shape against it before reading a tensor, and
fills it in place of empty (meta) weights, so nothing is half-loaded: either
it returns the whole model with a :class:`IXC2LoadReport`, or it raises one
error naming the file and what was expected.
"""
import json
import logging
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ...model.checkpoint import summarise_keys
from .configuration_ixc2 import IXC2_VL_7B, IXC2Config
from .errors import CheckpointError, CheckpointFileNotFound
from .modeling_ixc2 import IXC2ForCausalLM

logger = logging.getLogger(__name__)

# (index file, single file, format), in the order transformers prefers them.
WEIGHT_FILES = (
    ('model.safetensors.index.json', 'model.safetensors', 'safetensors'),
    ('pytorch_model.bin.index.json', 'pytorch_model.bin', 'bin'),
)
PREFIXES = ('model.', 'vit.', 'vision_proj.', 'output.')
# Checkpoint keys that may be there or not: buffers older transformers /
# remote code saved (recomputed here) and the connector's top-k (the
# config's ``num_selected`` when absent).
IGNORED = re.compile(r'(\.position_ids|\.rotary_emb\.inv_freq)$')
OPTIONAL = ('vision_proj.num_selected',)
# The released IXC2-family repositories (hub ids).
RELEASED_REPOS = ('internlm/internlm-xcomposer2-vl-7b',
                  'Coobiw/InternLM-XComposer2_Enhanced', 'IDEA-FinAI/chartmoe',
                  'Coobiw/ChartMoE_Reproduced')
# (token, id) pairs IXC2's chat protocol relies on.
CHAT_TOKEN_IDS = (('<s>', 1), ('</s>', 2), ('[UNUSED_TOKEN_145]', 92542),
                  ('[UNUSED_TOKEN_146]', 92543))


def resolve_folder(source, cache_dir=None):
    """A local folder, or the offline hub-cache snapshot of repo id
    ``source`` (``HF_HUB_CACHE`` or ``cache_dir``); nothing is downloaded."""
    if osp.isdir(source):
        return osp.abspath(source)
    if re.fullmatch(r'[\w.-]+/[\w.-]+', source):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
        try:
            return snapshot_download(source, cache_dir=cache_dir,
                                     local_files_only=True)
        except LocalEntryNotFoundError:
            pass
    raise CheckpointFileNotFound(
        f'{source}: neither a folder nor a repository id in the local hub '
        f'cache ({cache_dir or "HF_HUB_CACHE"}); nothing is downloaded')


class StoredTensor(NamedTuple):
    """Where a checkpoint tensor is and what it is, read without its
    data."""
    file: str
    shape: tuple
    dtype: torch.dtype


class WeightFiles:
    """The weight files of a folder and the key -> :class:`StoredTensor`
    table of their tensors (shapes and dtypes from the headers for
    safetensors; ``.bin`` files are memory-mapped)."""

    def __init__(self, folder):
        self.folder = folder
        self.format, self.files, weight_map = self._find(folder)
        self._bins = {}
        self.tensors = {}
        for name in self.files:
            for key, shape, dtype in self._headers(name):
                if key in self.tensors:
                    raise CheckpointError(
                        f'{osp.join(folder, name)}: {key} is also in '
                        f'{self.tensors[key].file}')
                self.tensors[key] = StoredTensor(name, shape, dtype)
        if weight_map is not None:
            absent = [f'{k} (in {v})' for k, v in sorted(weight_map.items())
                      if self.tensors.get(k, StoredTensor(None, (), None))
                      .file != v]
            if absent:
                raise CheckpointError(
                    f'{folder}: the index names tensors its shards do not '
                    f'hold: {absent[:4]}' + (' ...' if len(absent) > 4
                                             else ''))

    @staticmethod
    def _find(folder):
        for index, single, fmt in WEIGHT_FILES:
            if osp.isfile(osp.join(folder, index)):
                path = osp.join(folder, index)
                try:
                    with open(path) as f:
                        weight_map = json.load(f)['weight_map']
                    shards = sorted(set(weight_map.values()))
                except (OSError, ValueError, KeyError) as err:
                    raise CheckpointError(f'{path}: not a weight index '
                                          f'({err!r})') from None
                missing = [s for s in shards
                           if not osp.isfile(osp.join(folder, s))]
                if missing:
                    raise CheckpointFileNotFound(
                        f'{path} names shards that are not in {folder}: '
                        f'{missing}')
                return fmt, shards, weight_map
            if osp.isfile(osp.join(folder, single)):
                return fmt, [single], None
        raise CheckpointFileNotFound(
            f'{folder}: no weights; expected one of '
            f'{[name for entry in WEIGHT_FILES for name in entry[:2]]}')

    def _headers(self, name):
        path = osp.join(self.folder, name)
        try:
            if self.format == 'safetensors':
                from safetensors import safe_open
                with safe_open(path, 'pt') as f:
                    for key in f.keys():
                        part = f.get_slice(key)
                        yield key, tuple(part.get_shape()), _ST_DTYPES[
                            part.get_dtype()]
                return
            state = torch.load(path, map_location='cpu', mmap=True,
                               weights_only=True)
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f'{path}: unreadable weight file '
                                  f'({err})') from None
        if not isinstance(state, dict):
            raise CheckpointError(f'{path}: holds a {type(state).__name__}, '
                                  'not a state dict')
        self._bins[name] = state
        for key, value in state.items():
            yield key, tuple(value.shape), value.dtype

    def read(self, name, keys):
        """``{key: tensor}`` of ``keys`` from weight file ``name``."""
        if self.format == 'bin':
            return {k: self._bins[name][k] for k in keys}
        from safetensors import safe_open
        with safe_open(osp.join(self.folder, name), 'pt') as f:
            return {k: f.get_tensor(k) for k in keys}


_ST_DTYPES = {'F16': torch.float16, 'BF16': torch.bfloat16,
              'F32': torch.float32, 'F64': torch.float64,
              'I64': torch.int64, 'I32': torch.int32, 'BOOL': torch.bool,
              'U8': torch.uint8, 'I8': torch.int8}


@dataclass
class IXC2LoadReport:
    """What :func:`load_ixc2` read: the ``folder``, its weight ``files``
    (``format``), the stored and loaded float dtypes, how many tensors
    were ``loaded``; ``ignored`` checkpoint keys (recomputed buffers);
    ``fresh`` model tensors initialised because the checkpoint lacks them
    (only with ``allow_partial``)."""
    folder: str
    format: str
    files: list
    kind: str
    stored_dtype: str
    dtype: str
    loaded: int
    ignored: list = field(default_factory=list)
    fresh: list = field(default_factory=list)

    def summary(self):
        text = (f'{self.folder}: {self.kind}, {self.loaded} tensors from '
                f'{len(self.files)} {self.format} file(s), stored '
                f'{self.stored_dtype}, loaded as {self.dtype}')
        if self.ignored:
            text += f'; ignored: {summarise_keys(self.ignored, 6)}'
        if self.fresh:
            text += (f'; NOT IN THE CHECKPOINT, initialised: '
                     f'{summarise_keys(self.fresh, 6)}')
        return text


class LoadedIXC2(NamedTuple):
    """What :func:`load_ixc2` returns."""
    model: IXC2ForCausalLM
    tokenizer: object
    report: IXC2LoadReport


def _mismatch_hints(config, unexpected, missing):
    """Why keys differ, when a config / weights mismatch explains it."""
    hints = []
    if config.num_experts is None and any(
            k.startswith('vision_proj.experts.') for k in unexpected):
        hints.append('the weights hold a MoE connector (vision_proj.gate / '
                     'experts.N) but config.json has no num_experts / '
                     'num_selected (ChartMoE writes them)')
    if config.num_experts is not None and any(
            re.match(r'vision_proj\.\d\.', k) for k in unexpected):
        hints.append(f'config.json says num_experts={config.num_experts} but '
                     'the weights hold a dense vision_proj.{0,2}')
    layers = {int(m.group(1)) for k in unexpected | missing
              for m in [re.match(r'model\.layers\.(\d+)\.', k)] if m}
    if layers:
        hints.append(f'config.json says num_hidden_layers='
                     f'{config.num_hidden_layers}; the weights differ at '
                     f'layers {sorted(layers)[:4]}...')
    return ''.join(f' Hint: {h}.' for h in hints)


def _materialise(model, names, dtype):
    """Create the (meta) tensors ``names`` of ``model`` as new ones in
    ``dtype``: a module whose parameters are all new gets its own
    ``reset_parameters`` (Linear, Embedding, norms); otherwise biases start
    at zero and other tensors at Normal(0, 0.02)."""
    by_module = {}
    for name in names:
        module_name, _, attr = name.rpartition('.')
        by_module.setdefault(module_name, []).append(attr)
    for module_name, attrs in by_module.items():
        module = model.get_submodule(module_name)
        for attr in attrs:
            old = getattr(module, attr)
            setattr(module, attr, torch.nn.Parameter(
                torch.empty(old.shape, dtype=dtype), old.requires_grad))
        own = [n for n, _ in module.named_parameters(recurse=False)]
        if hasattr(module, 'reset_parameters') and set(own) == set(attrs):
            module.reset_parameters()
            continue
        for attr in attrs:
            init = torch.nn.init.zeros_ if attr == 'bias' else (
                lambda t: torch.nn.init.normal_(t, 0.0, 0.02))
            init(getattr(module, attr).data)


def _meta_in_dtype(model, dtype):
    """Give the float parameters of ``model`` (on the meta device) the
    ``dtype`` they would be loaded in, still without data."""
    for module in model.modules():
        for attr, param in list(module.named_parameters(recurse=False)):
            if param.dtype.is_floating_point and param.dtype != dtype:
                setattr(module, attr, torch.nn.Parameter(
                    param.to(dtype), param.requires_grad))


def _kind(model):
    config = model.config
    return (f'ChartMoE ({config.num_experts} experts, top-'
            f'{config.num_selected})' if model.is_moe
            else 'InternLM-XComposer2')


def _check_tokenizer(tokenizer, folder):
    for token, token_id in CHAT_TOKEN_IDS:
        got = tokenizer.convert_tokens_to_ids(token)
        if got != token_id:
            raise CheckpointError(
                f'{folder}: the tokenizer maps {token} to {got}; IXC2\'s chat '
                f'format needs it at {token_id}')


def load_tokenizer(folder, config=None):
    """The folder's own tokenizer (``AutoTokenizer``; the folder's
    tokenizer code runs when ``tokenizer_config.json`` names one in
    ``auto_map``, its config and model code never). Checks the ids of
    ``<s>``, ``</s>`` and the chat tokens."""
    from transformers import AutoTokenizer
    path = osp.join(folder, 'tokenizer_config.json')
    if not osp.isfile(path):
        raise CheckpointFileNotFound(f'{path}: missing; the folder has no '
                                     'tokenizer')
    with open(path) as f:
        remote = 'AutoTokenizer' in json.load(f).get('auto_map', {})
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            folder, trust_remote_code=remote,
            config=config or IXC2Config.from_released(folder))
    except (OSError, ValueError, ImportError) as err:
        raise CheckpointError(f'{folder}: cannot load its tokenizer '
                              f'({err})') from None
    _check_tokenizer(tokenizer, folder)
    return tokenizer


def _float_dtype(tensors):
    counts = {}
    for t in tensors.values():
        if t.dtype.is_floating_point:
            counts[t.dtype] = counts.get(t.dtype, 0) + 1
    return max(counts, key=counts.get) if counts else torch.float32


def load_ixc2(source, torch_dtype='auto', device='cpu', allow_partial=False,
              cache_dir=None, attn_implementation='sdpa', tokenizer=True,
              read_weights=True):
    """Build IXC2 / ChartMoE from a released folder or an offline hub-cache
    repo id, as stored.

    ``torch_dtype``: ``'auto'`` (the stored float dtype) or a torch dtype.
    ``allow_partial``: initialise model tensors the checkpoint lacks instead
    of refusing (listed in the report). ``tokenizer``: also load the
    folder's tokenizer. ``read_weights=False``: the same checks, then the
    model on the meta device, its parameters in the dtype they would load
    in, no weight read (``device`` ignored; for code that fills the parts
    it needs itself, as XTuner's ``pth_to_hf`` does). Returns
    :class:`LoadedIXC2` ``(model (eval mode), tokenizer or None,
    report)``. Raises :class:`CheckpointError` /
    :class:`CheckpointFileNotFound` naming the file and what was expected
    (another architecture, missing shard, keys or shapes that differ from
    config.json) before any tensor is read.
    """
    from accelerate import init_empty_weights
    folder = resolve_folder(source, cache_dir)
    config = IXC2Config.from_released(
        folder, attn_implementation=attn_implementation)
    weights = WeightFiles(folder)
    stored = weights.tensors
    if not any(k.startswith(PREFIXES) for k in stored):
        raise CheckpointError(
            f'{folder} ({weights.files[0]}): not an InternLM-XComposer2 '
            f'checkpoint; expected keys under {list(PREFIXES)}, found '
            f'[{summarise_keys(stored, 6)}]')
    with init_empty_weights():
        model = IXC2ForCausalLM(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ignored = sorted(k for k in stored if IGNORED.search(k)
                     and k not in expected)
    unexpected = set(stored) - set(expected) - set(ignored)
    missing = set(expected) - set(stored) - set(OPTIONAL)
    if unexpected or (missing and not allow_partial):
        where = sorted({stored[k].file for k in unexpected})
        raise CheckpointError(
            f'{folder}: the weights do not match config.json; not in the '
            f'weights: [{summarise_keys(missing, 6)}]; in '
            f'{where or "the weights"} but '
            f'not in the model: [{summarise_keys(unexpected, 6)}].'
            f'{_mismatch_hints(config, unexpected, missing)}'
            + (' Pass allow_partial=True to initialise the missing tensors.'
               if missing and not unexpected else ''))
    bad_shapes = [f'{k} in {stored[k].file}: {stored[k].shape}, expected '
                  f'{expected[k]}' for k in sorted(set(stored) & set(expected))
                  if stored[k].shape != expected[k]]
    if bad_shapes:
        raise CheckpointError(
            f'{folder}: tensor shapes differ from config.json: '
            f'{"; ".join(bad_shapes[:4])}' +
            (f' (and {len(bad_shapes) - 4} more)' if len(bad_shapes) > 4
             else ''))
    stored_dtype = _float_dtype(stored)
    dtype = stored_dtype if torch_dtype == 'auto' else torch_dtype
    if 'vision_proj.num_selected' in stored and model.is_moe:
        top_k = int(weights.read(stored['vision_proj.num_selected'].file,
                                 ['vision_proj.num_selected'])[
                                     'vision_proj.num_selected'])
        if top_k != config.num_selected:
            raise CheckpointError(
                f'{folder}: vision_proj.num_selected is {top_k} in '
                f'{stored["vision_proj.num_selected"].file} but '
                f'{config.num_selected} in config.json')
    fresh = sorted(missing) if read_weights else []
    if read_weights:
        for name in weights.files:
            keys = [k for k in expected
                    if k in stored and stored[k].file == name]
            state = {k: v.to(dtype) if v.dtype.is_floating_point else v
                     for k, v in weights.read(name, keys).items()}
            model.load_state_dict(state, strict=False, assign=True)
        _materialise(model, fresh, dtype)
        model = model.to(device)
    else:
        _meta_in_dtype(model, dtype)
    report = IXC2LoadReport(
        folder, weights.format, weights.files, _kind(model),
        str(stored_dtype).replace('torch.', ''),
        str(dtype).replace('torch.', ''),
        sum(k in stored for k in expected) if read_weights else 0, ignored,
        fresh)
    (logger.warning if fresh else logger.info)(report.summary())
    return LoadedIXC2(model.eval(), load_tokenizer(folder, config)
                      if tokenizer else None, report)


def released_config(config, dtype):
    """``config.json`` of a released folder for ``config``: IXC2-VL-7B's
    published file with this model's sizes (and ChartMoE's
    ``num_experts`` / ``num_selected``, a cut ``vision_config`` where the
    model differs from CLIP-ViT-L/14)."""
    out = dict(IXC2_VL_7B)
    for key in ('vocab_size', 'hidden_size', 'intermediate_size',
                'num_hidden_layers', 'num_attention_heads',
                'num_key_value_heads', 'img_size', 'plora_r', 'plora_alpha',
                'plora_dropout'):
        out[key] = getattr(config, key)
    for key in ('plora_r', 'plora_alpha', 'plora_dropout'):
        if out[key] == IXC2Config().to_dict()[key]:
            del out[key]
    default_vision = IXC2Config(img_size=config.img_size).vision_config
    if config.vision_config != default_vision:
        out['vision_config'] = {k: v for k, v in config.vision_config.items()
                                if k != 'image_size'}
    if config.num_experts is not None:
        out.update(num_experts=config.num_experts,
                   num_selected=config.num_selected)
    out['torch_dtype'] = str(dtype).replace('torch.', '')
    return out


def save_released(model, folder, dtype=torch.bfloat16, safe_serialization=True,
                  max_shard_size='5GB'):
    """Write ``model`` as a released folder is laid out: ``config.json``
    (:func:`released_config`) and the weights under the released key names
    in ``dtype`` (no ``vision_proj.num_selected``: ChartMoE's config says
    the top-k), sharded with an index when larger than
    ``max_shard_size``. Returns the weight file names."""
    from huggingface_hub import split_torch_state_dict_into_shards
    os.makedirs(folder, exist_ok=True)
    with open(osp.join(folder, 'config.json'), 'w') as f:
        json.dump(released_config(model.config, dtype), f, indent=2)
    state = {k: v.to(dtype).contiguous() if v.dtype.is_floating_point else v
             for k, v in model.state_dict().items() if k not in OPTIONAL}
    index, single, _ = WEIGHT_FILES[0 if safe_serialization else 1]
    stem, ext = single.split('.')
    split = split_torch_state_dict_into_shards(
        state, filename_pattern=stem + '{suffix}.' + ext,
        max_shard_size=max_shard_size)
    for name, keys in split.filename_to_tensors.items():
        shard = {k: state[k] for k in keys}
        if safe_serialization:
            from safetensors.torch import save_file
            save_file(shard, osp.join(folder, name), metadata={'format': 'pt'})
        else:
            torch.save(shard, osp.join(folder, name))
    if split.is_sharded:
        with open(osp.join(folder, index), 'w') as f:
            json.dump({'metadata': split.metadata,
                       'weight_map': split.tensor_to_filename}, f, indent=2)
    return sorted(split.filename_to_tensors)
