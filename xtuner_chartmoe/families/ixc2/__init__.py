"""The InternLM-XComposer2-VL (IXC2) family: IXC2 and ChartMoE built on it.

Public API:

- :func:`load_ixc2` (``source, torch_dtype='auto', device='cpu',
  allow_partial=False, cache_dir=None, attn_implementation='sdpa',
  tokenizer=True``) -> :class:`LoadedIXC2` ``(model, tokenizer, report)``:
  a released folder or offline hub-cache repo id, loaded as stored.
- :class:`IXC2ForCausalLM` (``encode_images``: ``[B, 3, 490, 490] ->
  [B, 1225, 4096]``; ``forward``; ``generate``) and :class:`IXC2Config`.
- :func:`encode_images` (paths / PIL images -> visual tokens),
  :func:`chat` (IXC2's native chat), :func:`chartmoe_answer` (ChartMoE's
  evaluation protocol), :func:`generate_reply`.
- Sequences: :func:`native_chat_prompt`, :func:`native_segments`,
  :func:`embed_segments`, :class:`ImageSlot`; ChartMoE's inference layout
  and prompts in :mod:`.chartmoe_protocol` (its scorer:
  ``xtuner_chartmoe.evaluation.chartmoe_reference``).
- :class:`IXC2Chat` (the family's :class:`~..base.ChatModel`:
  ``from_pretrained(source, device=None, dtype=None, allow_partial=False)``,
  ``encode_images``, batched ``answer`` with ChartMoE's protocol,
  ``expert_names``, ``connector``) and :func:`is_ixc2_source` (is a
  folder / hub id an IXC2-family checkpoint).
- Stand-ins: :mod:`.standin` (``build_ixc2_standins``, ``build_on_meta``).
- Training with XTuner (imported on their own, they need XTuner):
  :mod:`.xtuner_model` (``IXC2ChartMoEModel``: ChartMoE's stages),
  :mod:`.training_format` (conversation -> ids and loss labels),
  :mod:`.training_batch` (collate, visual tokens into the embeddings),
  :mod:`.qlora` (4-bit base linears).
"""
from .chat import IXC2Chat, is_ixc2_source
from .checkpoint import IXC2LoadReport, LoadedIXC2, load_ixc2, load_tokenizer
from .configuration_ixc2 import IXC2Config
from .errors import CheckpointError, CheckpointFileNotFound, ImageLoadError
from .generation import (Reply, chartmoe_answer, chat, encode_images,
                         generate_replies, generate_reply)
from .modeling_ixc2 import IXC2ForCausalLM
from .sequence import (ImageSlot, embed_segments, native_chat_prompt,
                       native_segments)

__all__ = [
    'IXC2Chat', 'is_ixc2_source', 'load_ixc2', 'load_tokenizer',
    'LoadedIXC2', 'IXC2LoadReport', 'IXC2Config', 'IXC2ForCausalLM',
    'encode_images', 'chat', 'chartmoe_answer', 'generate_reply',
    'generate_replies', 'Reply', 'ImageSlot', 'embed_segments',
    'native_chat_prompt', 'native_segments', 'CheckpointError',
    'CheckpointFileNotFound', 'ImageLoadError'
]
