"""The model-family seam: what every user path (chat, demo, ChartQA
evaluation, routing analysis, lmms-eval) needs of a chart VLM, whatever its
base model. XTuner's LLaVA (:mod:`.llava`) and InternLM-XComposer2
(:mod:`.ixc2`) implement it; :func:`xtuner_chartmoe.families.load_chat_model`
picks the family of a folder."""
import abc

import torch


def left_pad(rows, fill=0):
    """``[tensor [L_i, ...]]`` -> ``(batch [B, L, ...]`` with each row at
    the right end and ``fill`` before it, ``attention_mask [B, L]`` long: 1
    on the rows)``; the batch every family generates from."""
    length = max(len(row) for row in rows)
    first = rows[0]
    batch = first.new_full((len(rows), length, *first.shape[1:]), fill)
    mask = torch.zeros(len(rows), length, dtype=torch.long,
                       device=first.device)
    for i, row in enumerate(rows):
        batch[i, length - len(row):] = row
        mask[i, length - len(row):] = 1
    return batch, mask


class ChatModel(abc.ABC):
    """A chart VLM ready to answer.

    ``encode_images(images)`` -> ``(visual tokens [B, T, D_llm], routing)``;
    ``answer(images, questions, max_new_tokens, return_routing)`` -> greedy
    replies ``[B]`` (and ``routing``), one left-padded batch. ``images``:
    PIL images or paths; ``questions``: strings that already carry any task
    prompt (the family wraps them in its own chat format). ``routing``: the
    MoE connector's ``RouterOutput`` over ``[B, T]`` (``probs [B, T, E]``,
    ``experts [B, T, k]``, ...), None for a dense connector.
    ``expert_names``: the connector's experts, ``[]`` when dense;
    ``connector``: the vision-to-LLM connector module;
    ``force_expert(i)``: every visual token to expert ``i`` (None: routed).
    ``family``: the family's name (``'llava'``, ``'ixc2'``).
    """

    family = None

    @abc.abstractmethod
    def encode_images(self, images):
        """-> (visual tokens [B, T, D_llm], routing or None)."""

    @abc.abstractmethod
    def answer(self, images, questions, max_new_tokens=500,
               return_routing=False):
        """Greedy replies, one per (image, question); with
        ``return_routing``: ``(replies, routing)``."""

    @property
    @abc.abstractmethod
    def expert_names(self):
        """The connector's expert names in router order; [] if dense."""

    @property
    @abc.abstractmethod
    def connector(self):
        """The vision-to-LLM connector module (MoE or dense)."""

    @property
    def is_moe(self):
        return bool(self.expert_names)

    def top1_counts(self, routing, index=0):
        """``{expert name: visual tokens whose best expert it is}`` for
        image ``index`` of a batch's ``routing`` ({} for None)."""
        if routing is None:
            return {}
        names = self.expert_names
        top1 = routing.experts[index, :, 0]
        return dict(zip(names, torch.bincount(
            top1, minlength=len(names)).tolist()))

    def force_expert(self, index):
        """Send every visual token to expert ``index`` (None: the router
        decides again)."""
        if not self.is_moe:
            raise ValueError('forcing an expert needs a MoE connector')
        if index is not None and not 0 <= index < len(self.expert_names):
            raise ValueError(f'expert {index} is not in [0, '
                             f'{len(self.expert_names)})')
        self.connector.forced_expert = index
