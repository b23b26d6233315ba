"""IXC2 / ChartMoE behind the family seam (:class:`~..base.ChatModel`).

:class:`IXC2Chat` answers with ChartMoE's inference protocol
(``ChartMoE_Robot.chat`` as its ChartQA evaluation calls it; arXiv
2409.03277, IDEA-FinAI/ChartMoE ``chartmoe/generation_utils.py``): per
(image, question) the sequence ``<s>``, the image's 1225 visual tokens,
then ``[UNUSED_TOKEN_146]user\\n{question}[UNUSED_TOKEN_145]\\n
[UNUSED_TOKEN_146]assistant\\n`` (no system prompt), the Partial LoRA on
the image positions, greedy decoding stopped at ``[UNUSED_TOKEN_145]`` /
``</s>``, the reply cut at ``[UNUSED_TOKEN_145]`` and stripped — what
:func:`~.generation.chartmoe_answer` does for one sample, here for a
left-padded batch with its attention mask (the reference answers one
sample at a time). The padding is masked out and each prompt takes the
positions ``generate`` derives from the mask, so a batch gives the replies
each sample gets alone (up to float rounding; IXC2's own rotary ignores
``position_ids``, which would shift every position of a padded prompt by
the same amount: RoPE scores depend on relative positions only, so that
too would leave the scores unchanged).

:func:`is_ixc2_source` tells whether a folder or hub id is an IXC2-family
checkpoint, for ``load_chat_model``.
"""
import json
import os.path as osp
import re

import torch

from xtuner_chartmoe.model import MoEProjectorModel

from ..base import ChatModel
from . import chartmoe_protocol
from .checkpoint import RELEASED_REPOS, load_ixc2, resolve_folder
from .configuration_ixc2 import IXC2Config
from .errors import CheckpointFileNotFound
from .generation import generate_replies, pixel_values
from .sequence import embed_segments

# What a released IXC2 / ChartMoE config.json calls its model.
IXC2_ARCHITECTURES = ('InternLMXComposer2ForCausalLM',
                      'InternLMXcomposer2ForCausalLM')
IXC2_MODEL_TYPES = ('internlm', 'internlmxcomposer2', IXC2Config.model_type)
DTYPES = {'float32': torch.float32, 'fp32': torch.float32,
          'float16': torch.float16, 'fp16': torch.float16,
          'half': torch.float16, 'bfloat16': torch.bfloat16,
          'bf16': torch.bfloat16}


def _dtype(dtype, device):
    """``None`` -> fp16 on CUDA, fp32 elsewhere; a torch dtype, a name
    (``'bfloat16'``, ``'float16'``, ``'float32'``, short forms) or
    ``'auto'`` (the stored dtype)."""
    if dtype is None:
        return torch.float16 if device.type == 'cuda' else torch.float32
    if isinstance(dtype, torch.dtype) or dtype == 'auto':
        return dtype
    name = str(dtype).replace('torch.', '')
    if name not in DTYPES:
        raise ValueError(f'dtype {dtype!r}: expected a torch dtype or one '
                         f'of {sorted(DTYPES)} or "auto"')
    return DTYPES[name]


def _is_ixc2_config(path):
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(raw, dict):
        return False
    architectures = raw.get('architectures') or []
    if any(a in IXC2_ARCHITECTURES for a in architectures):
        return True
    # An InternLM-typed config with IXC2's vision field (a plain InternLM2
    # LLM has no img_size).
    return raw.get('model_type') in IXC2_MODEL_TYPES and 'img_size' in raw


def is_ixc2_source(source, cache_dir=None):
    """Whether ``source`` is an IXC2-family checkpoint: a folder whose
    ``config.json`` names ``InternLMXComposer2ForCausalLM`` (or has an
    InternLM ``model_type`` with IXC2's ``img_size``), or a hub repo id
    present in the offline hub cache (``HF_HUB_CACHE`` or ``cache_dir``)
    that is one of the known releases or whose snapshot is such a folder.
    Nothing is downloaded; never raises for an unknown source."""
    source = str(source)
    if osp.isdir(source):
        return _is_ixc2_config(osp.join(source, 'config.json'))
    if not re.fullmatch(r'[\w.-]+/[\w.-]+', source):
        return False
    try:
        folder = resolve_folder(source, cache_dir)
    except CheckpointFileNotFound:
        return False
    return source in RELEASED_REPOS or _is_ixc2_config(
        osp.join(folder, 'config.json'))


class IXC2Chat(ChatModel):
    """InternLM-XComposer2-VL or ChartMoE ready to answer (see the module
    docstring for the protocol).

    ``encode_images(images)`` -> ``(visual tokens [B, 1225, D], routing)``
    (``routing``: the MoE connector's ``RouterOutput`` over ``[B, 1225]``,
    None for IXC2's dense ``vision_proj``). ``answer(images, questions,
    max_new_tokens=500, return_routing=False)``: ``questions`` already
    carry the task prompt (e.g. ``chartmoe_reference.SHORT_ANSWER_INSTRUCTION
    + question``). ``report``: the loader's :class:`~.checkpoint.
    IXC2LoadReport` (None when built from a model).
    """

    family = 'ixc2'

    def __init__(self, model, tokenizer, report=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.report = report

    @classmethod
    def from_pretrained(cls, source, device=None, dtype=None,
                        allow_partial=False, cache_dir=None):
        """Load a released folder or an offline hub-cache repo id
        (:func:`~.checkpoint.load_ixc2`) on ``device`` (default CUDA when
        available) in ``dtype`` (default fp16 on CUDA, fp32 on CPU; a torch
        dtype, ``'bfloat16'`` / ``'float16'`` / ``'float32'`` or
        ``'auto'``)."""
        device = torch.device(device or (
            'cuda' if torch.cuda.is_available() else 'cpu'))
        loaded = load_ixc2(source, torch_dtype=_dtype(dtype, device),
                           device=device, allow_partial=allow_partial,
                           cache_dir=cache_dir)
        return cls(loaded.model, loaded.tokenizer, loaded.report)

    @property
    def device(self):
        return self.model.device

    @property
    def dtype(self):
        return self.model.dtype

    @property
    def connector(self):
        """``vision_proj``: ChartMoE's MoE connector or IXC2's dense MLP."""
        return self.model.vision_proj

    @property
    def expert_names(self):
        proj = self.connector
        if not isinstance(proj, MoEProjectorModel):
            return []
        return list(proj.config.expert_names)

    @torch.no_grad()
    def encode_images(self, images):
        """PIL images or paths -> ``(visual tokens [B, 1225, D] in the LLM's
        dtype, routing or None)``. An unreadable image raises
        :class:`~.errors.ImageLoadError` naming the file."""
        model = self.model
        pixels = pixel_values(images, model.config.img_size).to(model.device)
        features = model.vit(pixels)
        dtype = model.output.weight.dtype
        if not isinstance(model.vision_proj, MoEProjectorModel):
            return model.vision_proj(features).to(dtype), None
        out = model.vision_proj(features, output_router_logits=True)
        return out.last_hidden_state.to(dtype), out.routing

    def sequence(self, image_tokens, question):
        """``(inputs_embeds [1, L, D], im_mask [1, L])`` of ChartMoE's
        layout for one image's tokens ``[1225, D]`` and ``question``."""
        prompt = chartmoe_protocol.PROMPT_TEMPLATE.format(question)
        return embed_segments(
            self.model,
            chartmoe_protocol.chartmoe_segments(self.tokenizer, prompt),
            image_tokens[None])

    @torch.no_grad()
    def answer(self, images, questions, max_new_tokens=500,
               return_routing=False):
        """Greedy replies, one per (image, question), in one left-padded
        batch; with ``return_routing``: ``(replies, routing)``."""
        images, questions = list(images), list(questions)
        if len(images) != len(questions):
            raise ValueError(f'{len(images)} images for {len(questions)} '
                             'questions')
        if not images:
            return ([], None) if return_routing else []
        tokens, routing = self.encode_images(images)
        settings = {**chartmoe_protocol.GENERATION,
                    'max_new_tokens': max_new_tokens}
        replies = generate_replies(
            self.model, self.tokenizer,
            [self.sequence(t, q) for t, q in zip(tokens, questions)],
            chartmoe_protocol.STOP_TOKEN_IDS, **settings)
        replies = [reply.text.strip() for reply in replies]
        return (replies, routing) if return_routing else replies
