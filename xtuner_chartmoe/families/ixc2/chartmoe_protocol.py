"""ChartMoE's own inference protocol on IXC2, reproduced exactly.

From IDEA-FinAI/ChartMoE (arXiv 2409.03277): ``chartmoe/generation_utils.py``
(``ChartMoE_Robot.chat``: the sequence layout, template, stop tokens) and
``chartmoe/eval_ChartQA.py`` (the full prompts, generation settings). Its
instructions, PoT post-processing and scorer, which apply to any family,
are :mod:`xtuner_chartmoe.evaluation.chartmoe_reference`.
"""
from ...evaluation.chartmoe_reference import (POT_INSTRUCTIONS,
                                              SHORT_ANSWER_INSTRUCTION)
from .sequence import ImageSlot

# ChartMoE_Robot's default template: one user turn, no system prompt.
PROMPT_TEMPLATE = ('[UNUSED_TOKEN_146]user\n{}[UNUSED_TOKEN_145]\n'
                   '[UNUSED_TOKEN_146]assistant\n')
# Generation settings of eval_ChartQA.py (greedy, one beam, 500 tokens) and
# the stop tokens of ChartMoE_Robot.chat ([UNUSED_TOKEN_145], </s>).
GENERATION = dict(max_new_tokens=500, num_beams=1, do_sample=False,
                  repetition_penalty=1.0)
STOP_TOKEN_IDS = (92542, 2)


def chartqa_prompt(question, pot=False, pot_idx=0):
    """The full prompt eval_ChartQA.py sends for ``question``: short answer,
    or program of thought with ``pot_idx`` 0 (its default) or 1 (the one of
    the reproduced checkpoint's numbers)."""
    instruction = POT_INSTRUCTIONS[pot_idx] if pot else \
        SHORT_ANSWER_INSTRUCTION
    return PROMPT_TEMPLATE.format(instruction + question)


def chartmoe_segments(tokenizer, prompt, history=''):
    """ChartMoE's sequence: ``<s>``, the image, then ``history + prompt``
    tokenized without special tokens (no BOS after the image, no system
    prompt). Returns segments for :func:`~.sequence.embed_segments`."""
    ids = tokenizer(history + prompt, add_special_tokens=False)['input_ids']
    return [[tokenizer.bos_token_id], ImageSlot(0), ids]
