"""ChartMoE's own ChartQA protocol, reproduced exactly (pure functions).

From IDEA-FinAI/ChartMoE (arXiv 2409.03277): ``chartmoe/generation_utils.py``
(``ChartMoE_Robot.chat``: the sequence layout) and ``chartmoe/eval_ChartQA.py``
(the prompts, ``--pot_idx``, PoT post-processing and ``relaxed_acc``; the
prompts as of commit 904b519, which removed the space between instruction
and question).

This is the reference's scorer, flaws included (an empty prediction is a
substring of every label, so it counts as right; any "no" inside both
strings matches, e.g. "not" / "November"); this package's own scorer is
``xtuner_chartmoe.evaluation.metrics``.
"""
import re

from .sequence import ImageSlot

# ChartMoE_Robot's default template: one user turn, no system prompt.
PROMPT_TEMPLATE = ('[UNUSED_TOKEN_146]user\n{}[UNUSED_TOKEN_145]\n'
                   '[UNUSED_TOKEN_146]assistant\n')
SHORT_ANSWER_INSTRUCTION = 'Answer the question using a single word or phrase.'
# eval_ChartQA.py's ``pot_prompts``, indexed by ``--pot_idx``.
POT_INSTRUCTIONS = (
    'Please give the program of thought.',
    ('Please give the program of thought in python code. Use print function '
     'to output the answer in the end.'),
)
# Generation settings of eval_ChartQA.py (greedy, one beam, 500 tokens) and
# the stop tokens of ChartMoE_Robot.chat ([UNUSED_TOKEN_145], </s>).
GENERATION = dict(max_new_tokens=500, num_beams=1, do_sample=False,
                  repetition_penalty=1.0)
STOP_TOKEN_IDS = (92542, 2)
TOLERANCES = (0.05, 0.1, 0.2)
_PYTHON_BLOCK = re.compile(r'```python(.*?)```', re.DOTALL)
_NUMBER = re.compile(r'[\d.]+')


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


def extract_program(reply):
    """The code of the first ```python ... ``` block, else the whole
    reply (``extract_python_content``)."""
    match = _PYTHON_BLOCK.search(reply)
    return match.group(1) if match else reply


def pot_answer(stdout):
    """The program's output as scored: ``None`` (it failed) ->
    ``'error running...'``; ``True``/``False`` -> ``Yes``/``No`` wherever
    they occur; stripped."""
    text = 'error running...' if stdout is None else stdout
    return text.replace('True', 'Yes').replace('False', 'No').strip()


def _to_float(text):
    match = _NUMBER.search(text.replace(',', ''))
    try:
        return float(match.group()) if match else None
    except ValueError:  # e.g. '1.2.3' or '.'
        return None


def relaxed_acc(prediction, target, max_relative_change=0.05):
    """eval_ChartQA.py's ``relaxed_acc``: the first number of each (commas
    removed, sign ignored) within ``max_relative_change`` of the target
    (absolute error when the target is 0); otherwise, lower-cased: both
    contain "yes", or both contain "no", or the prediction is a substring
    of the target, or they are equal."""
    p, t = _to_float(prediction), _to_float(target)
    if p is not None and t is not None:
        change = abs(p - t) if t == 0 else abs(p - t) / abs(t)
        return change <= max_relative_change
    lp, tp = prediction.lower(), target.lower()
    if ('yes' in lp and 'yes' in tp) or ('no' in lp and 'no' in tp):
        return True
    return lp in tp or lp == tp


def relaxed_score(prediction, labels, max_relative_change=0.05):
    """``evaluate_relaxed_accuracy`` for one entry: the stripped prediction
    against each label (a str or a list), the best."""
    labels = [labels] if isinstance(labels, str) else labels
    return max(relaxed_acc(prediction.strip(), label, max_relative_change)
               for label in labels)
