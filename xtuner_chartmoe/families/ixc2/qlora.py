"""QLoRA for IXC2: the LLM's Partial-LoRA linears with 4-bit base weights.

QLoRA (arXiv 2305.14314) keeps the frozen base weights in 4-bit NF4
(bitsandbytes, CUDA only) and trains LoRA on top. In IXC2 (arXiv
2401.16420) the base linears are :class:`PLoRALinear`; each becomes a
:func:`plora_4bit_class` module: bitsandbytes' ``Linear4bit`` for ``W x``
plus the unchanged Partial LoRA on image tokens, so PEFT wraps it as a 4-bit
linear and passes ``im_mask`` through.
"""
import functools

from .modeling_internlm2_plora import PLoRALinear


@functools.lru_cache(maxsize=None)
def plora_4bit_class():
    """``PLoRALinear4bit(PLoRALinear, bnb.nn.Linear4bit)``:
    ``forward(x [B, L, in], im_mask [B, L] or None) -> [B, L, out]``, the
    base product in 4 bits, the Partial LoRA as :class:`PLoRALinear`."""
    import bitsandbytes as bnb

    class PLoRALinear4bit(PLoRALinear, bnb.nn.Linear4bit):
        """A :class:`PLoRALinear` whose ``weight`` is bitsandbytes
        ``Params4bit`` (quantized when moved to CUDA)."""

    return PLoRALinear4bit


def quantize_llm(ixc2, bnb_config):
    """Replace every :class:`PLoRALinear` of ``ixc2.model`` by a 4-bit one
    (``bnb_config``: a transformers ``BitsAndBytesConfig`` with
    ``load_in_4bit``) and move ``ixc2`` to the current CUDA device, which
    quantizes the weights."""
    import bitsandbytes as bnb
    import torch
    if not getattr(bnb_config, 'load_in_4bit', False):
        raise ValueError('quantization_config must be a BitsAndBytesConfig '
                         'with load_in_4bit=True (QLoRA)')
    cls = plora_4bit_class()
    for name, old in list(ixc2.model.named_modules()):
        if not isinstance(old, PLoRALinear):
            continue
        rank = old.Plora_A.out_features
        new = cls(old.in_features, old.out_features, old.bias is not None,
                  rank, old.lora_scaling * rank, old.lora_dropout.p)
        new.compute_dtype = bnb_config.bnb_4bit_compute_dtype
        new.weight = bnb.nn.Params4bit(
            old.weight.data, requires_grad=False,
            compress_statistics=bnb_config.bnb_4bit_use_double_quant,
            quant_type=bnb_config.bnb_4bit_quant_type)
        if old.bias is not None:
            new.bias = old.bias
        new.Plora_A, new.Plora_B = old.Plora_A, old.Plora_B
        parent, _, child = name.rpartition('.')
        setattr(ixc2.model.get_submodule(parent), child, new)
    return ixc2.to(torch.device('cuda', torch.cuda.current_device()))
