"""Answering with IXC2 / ChartMoE: images and a prompt in, text out.

:func:`generate_reply` runs transformers' generation on prepared
embeddings (the Partial LoRA applies to the prompt's visual tokens at
prefill, never at decode steps) and cuts the reply at the first stop
token. :func:`chat` is IXC2's native chat; :func:`chartmoe_answer` is
ChartMoE's ``ChartMoE_Robot.chat`` as its ChartQA evaluation calls it.
"""
from typing import NamedTuple

import torch

from ..base import left_pad
from . import chartmoe_protocol
from .modeling_vision import image_to_tensor
from .sequence import (IMAGE_PLACEHOLDER, MAX_LENGTH, META_INSTRUCTION,
                       NATIVE_GENERATION, STOP_TOKEN_IDS, TURN_END,
                       embed_segments, native_chat_prompt, native_segments)


class Reply(NamedTuple):
    """A generated reply: its ``text`` and its ``token_ids`` (the stop
    token, if one ended it, excluded)."""
    text: str
    token_ids: list


def pixel_values(images, size):
    """Image paths or PIL images -> ``[N, 3, size, size]`` (IXC2's
    preprocessing)."""
    return torch.stack([image_to_tensor(image, size) for image in images])


@torch.no_grad()
def encode_images(model, images):
    """Image paths or PIL images -> visual tokens ``[N, 1225, D]`` in the
    LLM's space."""
    pixels = pixel_values(images, model.config.img_size)
    return model.encode_images(pixels.to(model.device))


@torch.no_grad()
def generate_reply(model, tokenizer, inputs_embeds, im_mask,
                   stop_token_ids=STOP_TOKEN_IDS, **generate_kwargs):
    """Generate from ``inputs_embeds [1, L, D]`` / ``im_mask [1, L]``
    until a token of ``stop_token_ids`` or ``max_new_tokens``; other
    ``generate_kwargs`` go to transformers' ``generate``. The text is
    decoded without special tokens and cut at ``[UNUSED_TOKEN_145]``."""
    out = model.generate(
        inputs_embeds=inputs_embeds, im_mask=im_mask,
        attention_mask=torch.ones(inputs_embeds.shape[:2], dtype=torch.long,
                                  device=inputs_embeds.device),
        eos_token_id=list(stop_token_ids), pad_token_id=tokenizer.pad_token_id,
        **generate_kwargs)
    return decode_reply(tokenizer, out[0].tolist(), stop_token_ids)


def decode_reply(tokenizer, ids, stop_token_ids=STOP_TOKEN_IDS):
    """Generated token ``ids`` -> :class:`Reply`: cut before the first
    token of ``stop_token_ids``, decoded without special tokens, cut at
    ``[UNUSED_TOKEN_145]``."""
    stops = [i for i, token in enumerate(ids) if token in stop_token_ids]
    ids = ids[:stops[0]] if stops else ids
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return Reply(text.split(TURN_END)[0], ids)


def left_pad_sequences(sequences):
    """``[(inputs_embeds [1, L_i, D], im_mask [1, L_i])]`` -> one left-padded
    batch ``(inputs_embeds [B, L, D], im_mask [B, L], attention_mask [B,
    L])``: zeros, False and 0 on the padding."""
    inputs, attention_mask = left_pad([embeds[0] for embeds, _ in sequences])
    im_mask, _ = left_pad([mask[0] for _, mask in sequences], False)
    return inputs, im_mask, attention_mask


@torch.no_grad()
def generate_replies(model, tokenizer, sequences,
                     stop_token_ids=STOP_TOKEN_IDS, **generate_kwargs):
    """:func:`generate_reply` for several prompts at once: ``sequences``
    (``(inputs_embeds [1, L_i, D], im_mask [1, L_i])`` each) are generated
    as one left-padded batch with its attention mask; ``generate`` derives
    ``position_ids`` from the mask, so every prompt starts at position 0 as
    when it runs alone. Returns one :class:`Reply` per sequence."""
    if not sequences:
        return []
    inputs_embeds, im_mask, attention_mask = left_pad_sequences(sequences)
    out = model.generate(
        inputs_embeds=inputs_embeds, im_mask=im_mask,
        attention_mask=attention_mask, eos_token_id=list(stop_token_ids),
        pad_token_id=(tokenizer.pad_token_id if tokenizer.pad_token_id
                      is not None else tokenizer.eos_token_id),
        **generate_kwargs)
    return [decode_reply(tokenizer, row.tolist(), stop_token_ids)
            for row in out]


def chat(model, tokenizer, query, images=(), history=(),
         meta_instruction=None, **generate_kwargs):
    """IXC2's chat: ``query`` with ``<ImageHere>`` per image (one is put
    first when the query has none), the ``(question, answer)`` ``history``,
    IXC2's meta instruction unless ``meta_instruction`` is given ('' for
    none) and its generation defaults (sampling, top-p 0.8) unless
    overridden. Returns ``(response, history + [(query, response)])``."""
    if images and IMAGE_PLACEHOLDER not in query:
        query = IMAGE_PLACEHOLDER * len(images) + query
    prompt = native_chat_prompt(
        query, history,
        META_INSTRUCTION if meta_instruction is None else meta_instruction)
    tokens = encode_images(model, images) if images else None
    embeds, im_mask = embed_segments(model, native_segments(tokenizer, prompt),
                                     tokens, MAX_LENGTH)
    settings = {**NATIVE_GENERATION, **generate_kwargs}
    if not settings['do_sample']:  # greedy: no sampling settings
        settings.pop('temperature'), settings.pop('top_p')
    reply = generate_reply(model, tokenizer, embeds, im_mask, **settings)
    return reply.text, [*history, (query, reply.text)]


def chartmoe_answer(model, tokenizer, image, prompt, history='',
                    **generate_kwargs):
    """ChartMoE's answer to ``prompt`` (e.g.
    ``chartmoe_protocol.chartqa_prompt(question)``) about ``image``: its
    sequence layout (``<s>``, image, prompt), greedy, 500 new tokens,
    stopping at ``[UNUSED_TOKEN_145]`` / ``</s>``, stripped. Returns a
    :class:`Reply`."""
    tokens = encode_images(model, [image])
    embeds, im_mask = embed_segments(
        model, chartmoe_protocol.chartmoe_segments(tokenizer, prompt, history),
        tokens)
    reply = generate_reply(
        model, tokenizer, embeds, im_mask, chartmoe_protocol.STOP_TOKEN_IDS,
        **{**chartmoe_protocol.GENERATION, **generate_kwargs})
    return reply._replace(text=reply.text.strip())
