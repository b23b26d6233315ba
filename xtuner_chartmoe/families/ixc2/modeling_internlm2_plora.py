"""InternLM2 with Partial LoRA (PLoRA): the LLM of InternLM-XComposer2.

InternLM2 (arXiv 2403.17297): pre-norm decoder layers, RMSNorm, grouped-query
attention with a fused ``wqkv`` projection, RoPE, a SwiGLU MLP
``w2(silu(w1 x) * w3 x)``. IXC2 (arXiv 2401.16420, §3.1 "Partial LoRA")
replaces each of the five linears of a layer (``wqkv``, ``wo``, ``w1``,
``w3``, ``w2``) by a PLoRA linear: the base weight on every token plus a
low-rank delta ``B(A(x)) * alpha / r`` on the image tokens only. The image
mask ``im_mask [B, L]`` is threaded through every layer.

Written for this package from the published architecture (key names and
shapes of the released state dict); attention runs on torch's
``scaled_dot_product_attention`` or in eager mode with a float32 softmax,
never on flash-attn.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class PLoRALinear(nn.Linear):
    """A linear layer with a Partial LoRA delta on masked tokens.

    ``forward(x [B, L, in], im_mask [B, L] bool or None) -> [B, L, out]``:
    ``W x (+ b)`` on all tokens, plus ``Plora_B(Plora_A(dropout(x))) *
    alpha / r`` where ``im_mask`` is True. Parameters (as in the released
    checkpoints): ``weight [out, in]``, ``bias`` (when ``bias``),
    ``Plora_A.weight [r, in]``, ``Plora_B.weight [out, r]``.
    """

    def __init__(self, in_features, out_features, bias, lora_r, lora_alpha,
                 lora_dropout):
        super().__init__(in_features, out_features, bias=bias)
        self.Plora_A = nn.Linear(in_features, lora_r, bias=False)
        self.Plora_B = nn.Linear(lora_r, out_features, bias=False)
        self.lora_dropout = nn.Dropout(lora_dropout)
        self.lora_scaling = lora_alpha / lora_r

    def forward(self, x, im_mask=None):
        out = super().forward(x)
        if im_mask is None:
            return out
        delta = self.Plora_B(self.Plora_A(self.lora_dropout(x[im_mask])))
        return out.index_put((im_mask,), delta * self.lora_scaling,
                             accumulate=True)


class RMSNorm(nn.Module):
    """``weight * x / sqrt(mean(x^2) + eps)``, the statistics in float32,
    the result in the input dtype. ``[..., D] -> [..., D]``."""

    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def reset_parameters(self):
        nn.init.ones_(self.weight)

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_cos_sin(config, position_ids, dtype):
    """RoPE tables for ``position_ids [B, L]``: ``(cos, sin)``, each
    ``[B, 1, L, head_dim]`` in ``dtype``. InternLM2's scaling: ``linear``
    divides the positions by ``factor``; ``dynamic`` (NTK) raises the base to
    ``theta * (factor * n / max_pos - (factor - 1)) ** (d / (d - 2))`` once
    the ``n`` positions exceed ``max_position_embeddings``."""
    dim = config.head_dim
    base = float(config.rope_theta)
    positions = position_ids.float()
    scaling = config.rope_scaling or {}
    factor = float(scaling.get('factor', 1.0))
    if scaling.get('type') == 'linear':
        positions = positions / factor
    elif scaling.get('type') == 'dynamic':
        seq_len = int(position_ids.max()) + 1
        if seq_len > config.max_position_embeddings:
            base *= (factor * seq_len / config.max_position_embeddings -
                     (factor - 1)) ** (dim / (dim - 2))
    inv_freq = 1.0 / base ** (torch.arange(
        0, dim, 2, dtype=torch.float32, device=position_ids.device) / dim)
    freqs = positions[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x, cos, sin):
    """RoPE on ``x [B, H, L, head_dim]`` (non-interleaved halves)."""
    return x * cos + _rotate_half(x) * sin


def attention_mask_4d(attention_mask, batch, q_len, past_len, device):
    """Boolean mask ``[B, 1, q_len, past_len + q_len]`` (True: attend) of a
    causal step over ``attention_mask [B, past_len + q_len]`` (1: real token,
    0: padding; None: no padding); None when nothing needs masking (a
    single-token step without padding). Every query sees itself, so padded
    rows stay finite."""
    kv_len = past_len + q_len
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None
    if q_len == 1 and attention_mask is None:
        return None
    query_pos = past_len + torch.arange(q_len, device=device)[:, None]
    key_pos = torch.arange(kv_len, device=device)[None, :]
    mask = (key_pos <= query_pos).expand(batch, 1, q_len, kv_len)
    if attention_mask is not None:
        mask = mask & attention_mask[:, None, None, :kv_len].bool()
        mask = mask | (key_pos == query_pos)
    return mask


class InternLM2Attention(nn.Module):
    """Grouped-query attention with the fused PLoRA ``wqkv`` and PLoRA ``wo``.

    ``wqkv`` rows are laid out ``[kv_heads][groups + 2][head_dim]``: the
    ``groups`` query heads of each key/value head, then its key, then its
    value (query head ``h`` uses key/value head ``h // groups``).
    ``forward(x [B, L, D], cos, sin, im_mask, mask, cache, layer_idx) ->
    [B, L, D]``; ``cache`` a transformers ``Cache`` (or None).
    """

    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.groups = self.num_heads // self.num_kv_heads
        self.head_dim = config.head_dim
        self.eager = config._attn_implementation == 'eager'
        lora = (config.plora_r, config.plora_alpha, config.plora_dropout)
        self.wqkv = PLoRALinear(
            config.hidden_size,
            (self.num_heads + 2 * self.num_kv_heads) * self.head_dim,
            config.bias, *lora)
        self.wo = PLoRALinear(self.num_heads * self.head_dim,
                              config.hidden_size, config.bias, *lora)

    def forward(self, x, cos, sin, im_mask, mask, cache, layer_idx):
        batch, q_len, _ = x.shape
        qkv = self.wqkv(x, im_mask).view(batch, q_len, self.num_kv_heads,
                                         self.groups + 2, self.head_dim)
        q = qkv[..., :self.groups, :].reshape(batch, q_len, self.num_heads,
                                              self.head_dim).transpose(1, 2)
        k = qkv[..., -2, :].transpose(1, 2)
        v = qkv[..., -1, :].transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, layer_idx)
        k = k.repeat_interleave(self.groups, dim=1)
        v = v.repeat_interleave(self.groups, dim=1)
        if self.eager:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores.masked_fill(~mask,
                                            torch.finfo(scores.dtype).min)
            out = scores.softmax(-1, dtype=torch.float32).to(q.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, q_len, -1)
        return self.wo(out, im_mask)


class InternLM2MLP(nn.Module):
    """SwiGLU MLP of PLoRA linears: ``w2(silu(w1 x) * w3 x)``,
    ``[B, L, D] -> [B, L, D]``."""

    def __init__(self, config):
        super().__init__()
        lora = (config.plora_r, config.plora_alpha, config.plora_dropout)
        hidden, inner = config.hidden_size, config.intermediate_size
        self.w1 = PLoRALinear(hidden, inner, config.bias, *lora)
        self.w3 = PLoRALinear(hidden, inner, config.bias, *lora)
        self.w2 = PLoRALinear(inner, hidden, config.bias, *lora)

    def forward(self, x, im_mask):
        return self.w2(F.silu(self.w1(x, im_mask)) * self.w3(x, im_mask),
                       im_mask)


class InternLM2DecoderLayer(nn.Module):
    """``h += attention(attention_norm(h))``, then
    ``h += feed_forward(ffn_norm(h))``."""

    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.attention = InternLM2Attention(config)
        self.feed_forward = InternLM2MLP(config)
        self.attention_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.ffn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, h, cos, sin, im_mask, mask, cache):
        h = h + self.attention(self.attention_norm(h), cos, sin, im_mask,
                               mask, cache, self.layer_idx)
        return h + self.feed_forward(self.ffn_norm(h), im_mask)


class InternLM2PLoRAModel(nn.Module):
    """The decoder stack (``model.*`` of the released state dict:
    ``tok_embeddings``, ``layers.N``, ``norm``).

    ``forward(inputs_embeds [B, L, D], im_mask [B, L] bool or None,
    attention_mask [B, past + L] or None, position_ids [B, L] or None,
    cache)`` -> final hidden states ``[B, L, D]`` (``cache`` extended in
    place). ``im_mask`` None or all False: no PLoRA delta anywhere.
    ``gradient_checkpointing``: in training, recompute each layer in the
    backward pass instead of keeping its activations (no cache then).
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size,
                                           config.hidden_size,
                                           padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(InternLM2DecoderLayer(config, i)
                                    for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.gradient_checkpointing = False

    def forward(self, inputs_embeds, im_mask=None, attention_mask=None,
                position_ids=None, cache=None):
        batch, q_len, _ = inputs_embeds.shape
        past_len = cache.get_seq_length() if cache is not None else 0
        device = inputs_embeds.device
        if position_ids is None:
            position_ids = torch.arange(
                past_len, past_len + q_len, device=device).expand(batch, -1)
        if im_mask is not None and not bool(im_mask.any()):
            im_mask = None
        cos, sin = rotary_cos_sin(self.config, position_ids,
                                  inputs_embeds.dtype)
        mask = attention_mask_4d(attention_mask, batch, q_len, past_len,
                                 device)
        h = inputs_embeds
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                h = checkpoint(layer, h, cos, sin, im_mask, mask, None,
                               use_reentrant=False)
            else:
                h = layer(h, cos, sin, im_mask, mask, cache)
        return self.norm(h)
