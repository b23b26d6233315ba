"""IXC2's training sequences: a conversation -> token ids and loss labels.

The text is ChartMoE's ``conv2text`` (IDEA-FinAI/ChartMoE,
``chartmoe/train/data_mix.py``; ChartMoE arXiv 2409.03277): per turn
``[UNUSED_TOKEN_146]user\\n{value}[UNUSED_TOKEN_145]\\n`` or
``[UNUSED_TOKEN_146]assistant\\n{value}[UNUSED_TOKEN_145]\\n`` (values
stripped), no system turn, ``</s>`` at the end; ``<ImageHere>`` sits inside
the user's value. IXC2's training wrap (``interleav_wrap`` of
InternLM-XComposer2, arXiv 2401.16420) splits the text at ``<ImageHere>``
and tokenizes each non-empty part, with ``<s>`` before the first part only;
image ``i`` goes after part ``i``. Its ``mask_human_targets`` sets the
labels: -100 on image tokens and on every user turn up to and including its
``[UNUSED_TOKEN_145]`` and the assistant header
``\\n[UNUSED_TOKEN_146]assistant\\n`` that follows (5 tokens in InternLM2's
tokenizer); the loss falls on the assistant's text, its
``[UNUSED_TOKEN_145]``, the ``\\n`` after the last one and ``</s>``; nothing
after ``</s>``.

Here an image is one placeholder id (:data:`IMAGE_TOKEN_INDEX`) in
``input_ids``; the model replaces it by the image's visual tokens (1225 at
490 px) and their -100 labels, then truncates to ``max_length`` (4096).
"""
from typing import NamedTuple

from .sequence import IMAGE_PLACEHOLDER, TURN_END, TURN_START

IMAGE_TOKEN_INDEX = -200  # stands for one image's visual tokens
IGNORE_INDEX = -100
TURN_END_ID = 92542  # [UNUSED_TOKEN_145]
EOS_ID = 2  # </s>
ROLES = {'user': 'user', 'human': 'user', 'assistant': 'assistant',
         'gpt': 'assistant'}
ASSISTANT_HEADER = f'\n{TURN_START}assistant\n'


def conversation_text(conversations):
    """ChartMoE's ``conv2text``: the turns (``[{'from': 'user'|'assistant',
    'value': str}, ...]``) as one string ending in ``</s>``."""
    text = ''
    for turn in conversations:
        role = ROLES[turn['from'].lower()]
        text += f'{TURN_START}{role}\n{turn["value"].strip()}{TURN_END}\n'
    return text + '</s>'


def assistant_header_length(tokenizer):
    """How many tokens follow a user's ``[UNUSED_TOKEN_145]`` up to the
    answer (``\\n[UNUSED_TOKEN_146]assistant\\n``): 5 in InternLM2's
    tokenizer, the constant of IXC2's ``mask_human_targets``; measured
    after the turn-end token so that no tokenizer adds a word prefix."""
    ids = tokenizer(TURN_END + ASSISTANT_HEADER,
                    add_special_tokens=False)['input_ids']
    return len(ids) - 1


def mask_human_targets(input_ids, header_length):
    """IXC2's ``mask_human_targets`` on one sequence: the labels of
    ``input_ids`` (list of ints, images as negative ids): -100 from each
    user turn's start to its ``[UNUSED_TOKEN_145]`` plus ``header_length``
    tokens, and after the first ``</s>``."""
    labels = list(input_ids)
    ends = 0
    answer_end = 0  # where the next user turn starts
    for i, token in enumerate(input_ids):
        if token == TURN_END_ID:
            if ends % 2 == 0:
                stop = i + 1 + header_length
                labels[answer_end:stop] = [IGNORE_INDEX] * len(
                    labels[answer_end:stop])
            else:
                answer_end = i + 1
            ends += 1
        elif token == EOS_ID:
            labels[i + 1:] = [IGNORE_INDEX] * len(labels[i + 1:])
            break
    return [IGNORE_INDEX if t < 0 else t for t in labels]


class TrainingSample(NamedTuple):
    """One tokenized conversation: ``input_ids`` and ``labels`` (lists of
    the same length; :data:`IMAGE_TOKEN_INDEX` / -100 where an image's
    visual tokens go) and ``num_images``."""
    input_ids: list
    labels: list
    num_images: int


def tokenize_conversation(tokenizer, conversations, header_length=None):
    """A conversation -> :class:`TrainingSample` as IXC2 trains on it (the
    module docstring): ``<s>`` before the first text part only, one
    :data:`IMAGE_TOKEN_INDEX` per ``<ImageHere>``."""
    if header_length is None:
        header_length = assistant_header_length(tokenizer)
    parts = conversation_text(conversations).split(IMAGE_PLACEHOLDER)
    input_ids, need_bos = [], True
    for i, part in enumerate(parts):
        if part:
            input_ids += tokenizer(part,
                                   add_special_tokens=need_bos)['input_ids']
            need_bos = False
        if i < len(parts) - 1:
            input_ids.append(IMAGE_TOKEN_INDEX)
    return TrainingSample(input_ids, mask_human_targets(input_ids,
                                                        header_length),
                          len(parts) - 1)
