"""Configuration of InternLM-XComposer2-VL (IXC2) and of ChartMoE built on it.

Values from the published configuration of
``internlm/internlm-xcomposer2-vl-7b`` (its 4-bit sibling's ``config.json``
on the hub and full-precision copies of it), from the CLIP-ViT-L/14-336 configuration for the vision tower, and from
ChartMoE (IDEA-FinAI/ChartMoE, ``chartmoe/train/chartmoe_construction.py``),
which adds ``num_experts`` / ``num_selected`` to ``config.json``.

A released folder's ``config.json`` is read as data (:meth:`IXC2Config.
from_released`): the remote code it names in ``auto_map`` is never run.
"""
import json
import os.path as osp

from transformers import CLIPVisionConfig, PretrainedConfig

from .errors import CheckpointError, CheckpointFileNotFound

# config.json of internlm/internlm-xcomposer2-vl-7b as published (the
# architecture's values; the dtype of the full-precision copies).
IXC2_VL_7B = dict(
    architectures=['InternLMXComposer2ForCausalLM'],
    auto_map={
        'AutoConfig': 'configuration_internlm_xcomposer2.'
                      'InternLMXcomposer2Config',
        'AutoModel': 'modeling_internlm_xcomposer2.'
                     'InternLMXComposer2ForCausalLM',
        'AutoModelForCausalLM': 'modeling_internlm_xcomposer2.'
                                'InternLMXComposer2ForCausalLM'},
    model_type='internlm', vocab_size=92544, hidden_size=4096,
    intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, hidden_act='silu', max_position_embeddings=32768,
    rms_norm_eps=1e-5, rope_theta=1000000,
    rope_scaling={'type': 'dynamic', 'factor': 1.0}, bias=False,
    initializer_range=0.02, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    tie_word_embeddings=False, img_size=490, max_length=4096,
    use_cache=False, torch_dtype='float16')

# CLIP-ViT-L/14 (openai/clip-vit-large-patch14-336), the tower IXC2 builds.
CLIP_VIT_L_14 = dict(hidden_size=1024, intermediate_size=4096,
                     num_hidden_layers=24, num_attention_heads=16,
                     patch_size=14, hidden_act='quick_gelu',
                     layer_norm_eps=1e-5, num_channels=3)

# Partial LoRA of every decoder linear (IXC2's PLoRA: r 256, alpha 256,
# dropout 0.05; lmdeploy's xcomposer2 reader agrees on r and scale).
PLORA = dict(plora_r=256, plora_alpha=256, plora_dropout=0.05)

# Keys config.json must have for an IXC2-family checkpoint.
REQUIRED_KEYS = ('vocab_size', 'hidden_size', 'intermediate_size',
                 'num_hidden_layers', 'num_attention_heads',
                 'num_key_value_heads', 'img_size')


class IXC2Config(PretrainedConfig):
    """Settings of :class:`~.modeling_ixc2.IXC2ForCausalLM`.

    InternLM2 fields (as in IXC2's ``config.json``), ``img_size`` (490: the
    vision tower's input side), the Partial LoRA (``plora_r``,
    ``plora_alpha``, ``plora_dropout``), ``vision_config`` (a CLIP vision
    config dict; default CLIP-ViT-L/14 at ``img_size``; a released
    ``config.json`` has none, a depth-cut stand-in says its depth there),
    ``num_experts`` / ``num_selected`` (ChartMoE: the connector is a MoE of
    that many MLPs, top-``num_selected``; ``None``: IXC2's dense
    ``vision_proj``) and ``attn_implementation`` (``'sdpa'`` or ``'eager'``,
    the latter with IXC2's fp32 softmax).
    """
    # IXC2's own (its config.json's): a release folder written by
    # xtuner_chartmoe.release.ixc2_release names this class in auto_map,
    # and transformers warns when the two differ.
    model_type = 'internlm'

    def __init__(self, vocab_size=92544, hidden_size=4096,
                 intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8,
                 hidden_act='silu', max_position_embeddings=32768,
                 rms_norm_eps=1e-5, rope_theta=1000000, rope_scaling=None,
                 bias=False, initializer_range=0.02, img_size=490,
                 vision_config=None, plora_r=PLORA['plora_r'],
                 plora_alpha=PLORA['plora_alpha'],
                 plora_dropout=PLORA['plora_dropout'], num_experts=None,
                 num_selected=None, attn_implementation='sdpa',
                 bos_token_id=1, eos_token_id=2, pad_token_id=2,
                 tie_word_embeddings=False, **kwargs):
        if hidden_act != 'silu':
            raise ValueError(
                f'InternLM2 uses silu, got hidden_act={hidden_act!r}')
        if hidden_size % num_attention_heads or \
                num_attention_heads % num_key_value_heads:
            raise ValueError(
                f'hidden_size {hidden_size}, num_attention_heads '
                f'{num_attention_heads} and num_key_value_heads '
                f'{num_key_value_heads} do not divide')
        if rope_scaling is not None and (
                rope_scaling.get('type') not in ('linear', 'dynamic')
                or float(rope_scaling.get('factor', 0)) < 1):
            raise ValueError(f'rope_scaling must be {{type: linear|dynamic, '
                             f'factor >= 1}}, got {rope_scaling}')
        if (num_experts is None) != (num_selected is None):
            raise ValueError('num_experts and num_selected go together, got '
                             f'{num_experts} and {num_selected}')
        if attn_implementation is None:  # transformers' from_dict passes it
            attn_implementation = 'sdpa'
        if attn_implementation not in ('sdpa', 'eager'):
            raise ValueError("attn_implementation must be 'sdpa' or 'eager', "
                             f'got {attn_implementation!r}')
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.bias = bias
        self.initializer_range = initializer_range
        self.img_size = img_size
        self.vision_config = {**CLIP_VIT_L_14, **(vision_config or {}),
                              'image_size': img_size}
        self.plora_r = plora_r
        self.plora_alpha = plora_alpha
        self.plora_dropout = plora_dropout
        self.num_experts = num_experts
        self.num_selected = num_selected
        super().__init__(bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         pad_token_id=pad_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)
        # after super(): PretrainedConfig resets it
        self._attn_implementation = attn_implementation

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    @property
    def clip_vision_config(self):
        """The vision tower's ``CLIPVisionConfig`` (``image_size`` =
        ``img_size``, so its position table has ``(img_size / patch)^2 + 1``
        rows: 1226 at 490 px)."""
        return CLIPVisionConfig(**self.vision_config,
                                attn_implementation='sdpa')

    @property
    def num_image_tokens(self):
        """Visual tokens per image: the patch grid without CLS (1225)."""
        return (self.img_size // self.vision_config['patch_size']) ** 2

    @classmethod
    def from_released(cls, folder, **overrides):
        """The config of a released folder (``folder/config.json`` of
        IXC2, ChartMoE or a stand-in), read as data. Raises
        :class:`CheckpointError` naming the file when it is not an IXC2
        configuration (another architecture, missing keys, bad values)."""
        path = osp.join(folder, 'config.json')
        if not osp.isfile(path):
            raise CheckpointFileNotFound(f'{path}: no config.json; expected '
                                         'an InternLM-XComposer2 folder')
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, ValueError) as err:
            raise CheckpointError(f'{path}: unreadable config ({err})') \
                from None
        missing = [k for k in REQUIRED_KEYS if k not in raw]
        if missing:
            raise CheckpointError(
                f'{path}: not an InternLM-XComposer2 configuration '
                f'(architectures={raw.get("architectures")}, model_type='
                f'{raw.get("model_type")!r}); it lacks {missing}')
        known = set(cls().to_dict()) | {'vision_config'}
        values = {k: v for k, v in raw.items() if k in known and k not in (
            'architectures', 'auto_map', 'model_type', 'torch_dtype',
            'transformers_version', 'attn_implementation', 'use_cache',
            'max_length')}
        try:
            config = cls(**{**values, **overrides})
        except (TypeError, ValueError) as err:
            raise CheckpointError(f'{path}: {err}') from None
        return config
