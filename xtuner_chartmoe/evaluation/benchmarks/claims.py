"""Judging a reply and scoring claim verification, shared by the yes/no
benchmarks (ChartBench's judgement pairs, ChartFC, ChartCheck).

Reading a reply (:func:`verdict`): the first word of the reply, lower-cased,
after any leading spaces, punctuation, quotes, brackets or markdown
(``"**Yes.**"``, ``"[no]"``, ``"  True, because"``). ``yes`` / ``true`` /
``supports`` / ``supported`` / ``support`` / ``correct`` / ``right`` are a
positive verdict; ``no`` / ``false`` / ``refutes`` / ``refuted`` /
``refute`` / ``incorrect`` / ``wrong`` / ``not`` a negative one; any other
first word (``"The claim is true"``) or an empty reply is no verdict and is
scored wrong (counted in the ``unparsed`` column). The benchmarks' own code
reads replies otherwise: ChartBench, "yes" anywhere in the reply means yes,
anything else no (its protocol in :mod:`.chartbench`); the ChartCheck
authors' zero-shot baseline, the reply exactly "Yes" or "No" (protocol
``exact`` here).

Scoring a claim-verification split (:func:`verification_scores`): accuracy
and macro F1 over the classes that occur in the gold labels or the
predictions (scikit-learn's ``f1_score(average='macro')``, which ChartFC's
``code/main.py`` and ChartCheck's ``classification_explanation_flanT5.py``
report beside accuracy). A reply without a verdict is a miss of its gold
class and a prediction of neither (the ChartCheck script drops such replies
from its F1 instead; here they count against the model).
"""
import os.path as osp
import re

from .base import Benchmark, Protocol, Sample

POSITIVE = frozenset({'yes', 'true', 'supports', 'supported', 'support',
                      'correct', 'right'})
NEGATIVE = frozenset({'no', 'false', 'refutes', 'refuted', 'refute',
                      'incorrect', 'wrong', 'not'})
_WORD = re.compile(r'[a-z]+')
CLASSES = {True: 'supports', False: 'refutes'}


def verdict(reply):
    """True (positive), False (negative) or None (no verdict) from the
    first word of ``reply`` (see the module docstring)."""
    word = _WORD.search(str(reply or '').lower())
    if word is None:
        return None
    word = word.group()
    return True if word in POSITIVE else False if word in NEGATIVE else None


def verification_scores(gold, predicted):
    """``gold``: [bool], ``predicted``: [bool or None] ->
    ``{'accuracy', 'macro F1', 'F1 supports', 'F1 refutes'}`` in % (a
    class's F1 is left out where the class is neither gold nor predicted)
    and ``'unparsed'`` (replies without a verdict)."""
    table = {'accuracy': 100.0 * sum(
        p is g for g, p in zip(gold, predicted)) / len(gold) if gold else 0.0}
    f1s = {}
    for cls, name in CLASSES.items():
        tp = sum(g is cls and p is cls for g, p in zip(gold, predicted))
        fp = sum(g is not cls and p is cls for g, p in zip(gold, predicted))
        fn = sum(g is cls and p is not cls for g, p in zip(gold, predicted))
        if tp + fp + fn:
            f1s[f'F1 {name}'] = 100.0 * 2 * tp / (2 * tp + fp + fn)
    table['macro F1'] = sum(f1s.values()) / len(f1s) if f1s else 0.0
    table.update(f1s)
    table['unparsed'] = sum(p is None for p in predicted)
    return table


def claim_prompt(mode, claim):
    """The question a claim is verified by: the ChartCheck authors'
    zero-shot prompt for a chart model (github.com/mubasharaak/ChartCheck,
    ``matcha_0_shot_baseline.py``, labels Yes / No); ChartFC, by the same
    authors, publishes none for generative models."""
    return f'is the following claim supported by the chart: {claim} (Yes/No)'


def _claim_rule(read):
    """``correct(answer, labels)`` from ``read(answer) -> bool or None``."""
    return lambda answer, labels: read(answer) is (labels[0] == CLASSES[True])


PROTOCOLS = (
    Protocol('ours', claim_prompt, correct=_claim_rule(verdict),
             about="the reply's first word as the verdict; accuracy and "
             'macro F1'),
    Protocol('exact', claim_prompt, correct=_claim_rule(
        lambda answer: {'Yes': True, 'No': False}.get(answer)),
             about="the ChartCheck authors' zero-shot baseline "
             '(matcha_0_shot_baseline.py): the reply exactly Yes or No'),
)


def read_with(protocol, answer):
    """The verdict ``protocol`` reads in ``answer`` (True, False or None),
    through its ``correct`` rule."""
    if answer is None:
        return None
    for said in (True, False):
        if protocol.correct(answer, (CLASSES[said],)):
            return said
    return None


def split_of(file):
    """The split a claim file is reported under, from its name:
    ``test_two`` (ChartCheck's second test set), ``test``, ``validation``
    / ``valid`` / ``val``, ``train``; else the file's name."""
    name = osp.splitext(osp.basename(file))[0].lower()
    for key, split in (('test_two', 'test_two'), ('test', 'test'),
                       ('val', 'validation'), ('train', 'train')):
        if key in name:
            return split
    return name


def claim_samples(records, split, claim, gold, image, uid):
    """Samples of ``split`` from claim records: ``claim`` (the field) /
    ``gold`` (record -> bool) / ``image`` / ``uid`` (record, index ->
    value); labels ``('supports',)`` or ``('refutes',)``, category the
    label."""
    samples = []
    for i, record in enumerate(records):
        label = CLASSES[gold(record)]
        samples.append(Sample(uid=str(uid(record, i)), split=split,
                              image=image(record), question=record[claim],
                              labels=(label,), category=label))
    return samples


def image_in(file, name, image_folder, folders=('images', '')):
    """A chart file named ``name``: in ``image_folder`` when given, else in
    the first of ``folders`` (relative to the data file's folder) that holds
    it (the first one when none does, to be named as unreadable)."""
    if image_folder:
        return osp.join(image_folder, name)
    here = osp.dirname(file)
    candidates = [osp.normpath(osp.join(here, folder, name))
                  for folder in folders]
    return next((p for p in candidates if osp.isfile(p)), candidates[0])


class ClaimVerification(Benchmark):
    """A claim-verification benchmark: a claim about a chart, supported or
    refuted. Rows per sample ``{claim, label, verdict, correct}``; table per
    split: accuracy, macro F1, F1 per class (%), unparsed replies."""

    metric = 'claim verification (%)'
    protocols = {p.name: p for p in PROTOCOLS}

    def files(self, path):
        """In a folder, its test files (``*test*``) when it has any (the
        authors' folders also hold train and validation files)."""
        files = super().files(path)
        if osp.isfile(path):
            return files
        tests = [f for f in files if split_of(f).startswith('test')]
        return tests or files

    def score(self, samples, answers, protocol):
        rows, by_split = [], {}
        for sample, answer in zip(samples, answers):
            said = read_with(protocol, answer)
            gold = sample.labels[0] == CLASSES[True]
            rows.append({'claim': sample.question, 'label': sample.labels[0],
                         'verdict': None if said is None else CLASSES[said],
                         'correct': said is gold})
            split = by_split.setdefault(sample.split, ([], []))
            split[0].append(gold)
            split[1].append(said)
        return rows, {split: verification_scores(*pair)
                      for split, pair in by_split.items()}
