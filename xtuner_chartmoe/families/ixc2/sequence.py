"""Sequences of text and images for IXC2: the chat format and the
embedding of interleaved segments.

IXC2's native chat (its ``chat`` / ``interleav_wrap_chat``, arXiv
2401.16420): an optional system turn with the meta instruction, the history
turns, the user turn, then ``[UNUSED_TOKEN_146]assistant\\n``; the prompt is
split at ``<ImageHere>`` and every non-empty text part is tokenized with its
own ``<s>``; image ``i`` goes after part ``i``. ChartMoE's layout is in
:mod:`.chartmoe_protocol`.

A sequence is a list of *segments*: token-id lists and :class:`ImageSlot`
entries; :func:`embed_segments` turns it into ``inputs_embeds`` and the
Partial-LoRA mask.
"""
from typing import NamedTuple

import torch

IMAGE_PLACEHOLDER = '<ImageHere>'
TURN_START = '[UNUSED_TOKEN_146]'  # id 92543 (InternLM2's <|im_start|>)
TURN_END = '[UNUSED_TOKEN_145]'  # id 92542 (InternLM2's <|im_end|>)
# IXC2's default meta instruction (as lmdeploy's InternLMXComposer2Chat7B
# template carries it).
META_INSTRUCTION = (
    'You are an AI assistant whose name is InternLM-XComposer (浦语·灵笔).\n'
    '- InternLM-XComposer (浦语·灵笔) is a multi-modality conversational '
    'language model that is developed by Shanghai AI Laboratory '
    '(上海人工智能实验室). It is designed to be helpful, honest, and '
    'harmless.\n'
    '- InternLM-XComposer (浦语·灵笔) can understand and communicate '
    'fluently in the language chosen by the user such as English and 中文.\n'
    '- InternLM-XComposer (浦语·灵笔) is capable of comprehending and '
    'articulating responses effectively based on the provided image.')
# IXC2 chat's generation defaults and stop tokens (</s>, [UNUSED_TOKEN_145]).
NATIVE_GENERATION = dict(max_new_tokens=1024, do_sample=True,
                         temperature=1.0, top_p=0.8,
                         repetition_penalty=1.005)
STOP_TOKEN_IDS = (2, 92542)
MAX_LENGTH = 4096  # IXC2 truncates the prompt embeddings to its max_length


class ImageSlot(NamedTuple):
    """The place of image ``index`` (its visual tokens) in a sequence."""
    index: int


def user_turn(text):
    return f'{TURN_START}user\n{text}{TURN_END}\n'


def native_chat_prompt(query, history=(), meta_instruction=META_INSTRUCTION):
    """IXC2's chat prompt: ``meta_instruction`` as a system turn (none when
    empty), the ``history`` ``(question, answer)`` turns, the ``query``
    (with ``<ImageHere>`` where images go) and the assistant's opening."""
    prompt = (f'{TURN_START}system\n{meta_instruction}{TURN_END}\n'
              if meta_instruction else '')
    for question, answer in history:
        prompt += (user_turn(question) +
                   f'{TURN_START}assistant\n{answer}{TURN_END}\n')
    return prompt + user_turn(query) + f'{TURN_START}assistant\n'


def native_segments(tokenizer, prompt):
    """IXC2's chat segments of ``prompt``: each non-empty text part between
    ``<ImageHere>`` marks with its own ``<s>`` (``add_special_tokens``),
    ``ImageSlot(i)`` after part ``i``."""
    parts = prompt.split(IMAGE_PLACEHOLDER)
    segments = []
    for i, part in enumerate(parts):
        if part:
            segments.append(tokenizer(part)['input_ids'])
        if i < len(parts) - 1:
            segments.append(ImageSlot(i))
    return segments


def embed_segments(model, segments, image_tokens=None, max_length=None):
    """``segments`` -> ``(inputs_embeds [1, L, D], im_mask [1, L] bool)``.

    ``image_tokens [N, T, D]``: the visual tokens of the N images
    (``model.encode_images``), placed at their ``ImageSlot``; ``im_mask``
    is True there. ``max_length``: keep the first tokens only (IXC2
    truncates at 4096)."""
    embeds, masks = [], []
    for segment in segments:
        if isinstance(segment, ImageSlot):
            if image_tokens is None or segment.index >= len(image_tokens):
                given = 0 if image_tokens is None else len(image_tokens)
                raise ValueError(f'the sequence has image {segment.index}, '
                                 f'{given} images were given')
            tokens = image_tokens[segment.index]
            masks.append(torch.ones(len(tokens), dtype=torch.bool))
        else:
            ids = torch.tensor(segment, dtype=torch.long,
                               device=model.device)
            tokens = model.embed_tokens(ids)
            masks.append(torch.zeros(len(tokens), dtype=torch.bool))
        embeds.append(tokens.to(model.dtype))
    inputs_embeds = torch.cat(embeds)[None, :max_length]
    im_mask = torch.cat(masks)[None, :max_length].to(inputs_embeds.device)
    return inputs_embeds, im_mask
