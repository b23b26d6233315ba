"""ChartQA relaxed accuracy (ChartQA, Masry et al. 2022; as ChartMoE's
``eval_ChartQA.py`` scores it, except that an empty prediction is wrong) and
PoT answer extraction."""
import re

TOLERANCES = (0.05, 0.1, 0.2)
_NUMBER = re.compile(r'^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$')
_CODE_BLOCK = re.compile(r'```(?:python|py)?\s*\n(.*?)```', re.S)


def to_number(text):
    """'1,234.5' / '-3' / '45%' / '$12' -> float; None if not a number.
    A percent sign is dropped, not divided by 100 (labels are written as on
    the chart: '45%' and '45' are the same answer)."""
    text = text.strip().replace(',', '').rstrip('%').lstrip('$').strip()
    return float(text) if _NUMBER.match(text) else None


def relaxed_correct(prediction, labels, tolerance=0.05):
    """Is ``prediction`` right for any of ``labels`` (str or list)?

    Numbers: ``|p - t| <= tolerance * |t|`` (exact when t == 0); otherwise a
    case-insensitive exact match. An empty prediction is always wrong (the
    reference implementation's ``'' in target`` counts it as right).
    """
    prediction = str(prediction).strip()
    if not prediction:
        return False
    labels = labels if isinstance(labels, (list, tuple)) else [labels]
    p = to_number(prediction)
    for label in labels:
        label = str(label).strip()
        t = to_number(label)
        if p is not None and t is not None:
            if abs(p - t) <= tolerance * abs(t):
                return True
        elif prediction.lower() == label.lower():
            return True
    return False


def extract_program(reply):
    """The first ```python``` block of a reply, or the whole reply."""
    match = _CODE_BLOCK.search(reply)
    return match.group(1) if match else reply


def normalise_pot_output(stdout):
    """Printed answer -> short answer: last printed line, True/False ->
    Yes/No."""
    lines = stdout.strip().splitlines()
    answer = lines[-1].strip() if lines else ''
    return {'True': 'Yes', 'False': 'No'}.get(answer, answer)


def accuracy_table(correct_by_split):
    """``{split: {tol: [bool]}}`` -> ``{split: {tol: accuracy %}}`` with an
    ``Averaged`` row (mean of the split accuracies, as in ChartMoE)."""
    table = {split: {tol: 100.0 * sum(v) / len(v) if v else 0.0
                     for tol, v in by_tol.items()}
             for split, by_tol in correct_by_split.items()}
    if table:
        tols = next(iter(table.values())).keys()
        table['Averaged'] = {tol: sum(row[tol] for row in table.values()) /
                             len(table) for tol in tols}
    return table

