"""ChartMoE's own ChartQA scoring, reproduced exactly (pure functions), for
``chartmoe eval-chartqa --protocol chartmoe`` with any model family.

From IDEA-FinAI/ChartMoE (arXiv 2409.03277), ``chartmoe/eval_ChartQA.py``:
the instructions (as of commit 904b519, which removed the space between
instruction and question), ``--pot_idx``, PoT post-processing and
``relaxed_acc``. This is the reference's scorer, flaws included (an empty
prediction is a substring of every label, so it counts as right; any "no"
inside both strings matches, e.g. "not" / "November"); this package's own
scorer is :mod:`.metrics`. The sequence layout of ChartMoE's inference is
the IXC2 family's (``families/ixc2/chartmoe_protocol.py``).
"""
import re

SHORT_ANSWER_INSTRUCTION = 'Answer the question using a single word or phrase.'
# eval_ChartQA.py's ``pot_prompts``, indexed by ``--pot_idx``.
POT_INSTRUCTIONS = (
    'Please give the program of thought.',
    ('Please give the program of thought in python code. Use print function '
     'to output the answer in the end.'),
)
TOLERANCES = (0.05, 0.1, 0.2)
_PYTHON_BLOCK = re.compile(r'```python(.*?)```', re.DOTALL)
_NUMBER = re.compile(r'[\d.]+')


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
