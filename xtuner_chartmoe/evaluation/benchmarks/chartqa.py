"""ChartQA (Masry et al., "ChartQA: A Benchmark for Question Answering
about Charts with Visual and Logical Reasoning", Findings of ACL 2022) on
the benchmark seam: relaxed accuracy at 0.05 / 0.1 / 0.2, rows Human /
Augmented / Averaged (the mean of the two, as ChartMoE's
``eval_ChartQA.py`` reports it), answer modes ``short`` and ``pot``
(program of thought, run in the sandbox).

Protocols: ``ours`` (the paper's relaxed accuracy, :mod:`..metrics`; an
empty answer is wrong) and ChartMoE's own (IDEA-FinAI/ChartMoE, arXiv
2409.03277, ``chartmoe/eval_ChartQA.py``: its prompts, PoT
post-processing and scorer, :mod:`..chartmoe_reference`) with its PoT
prompt 0 (``chartmoe``, its default) or 1 (``chartmoe-pot1``, the prompt
of the reproduced checkpoint's published numbers).

Formats, as downloaded:

- ChartQA's GitHub release (github.com/vis-nlp/ChartQA, ``ChartQA
  Dataset/{train,val,test}/``: ``<split>_human.json`` and
  ``<split>_augmented.json``, lists of ``{imgname, query, label}``, the
  charts in ``png/`` beside them; also the layout our synthesis writes,
  ``test/test_*.json`` with the images under ``--image-folder``). This is
  the only format ChartMoE's ``eval_ChartQA.py`` reads
  (``ChartQA_ROOT/test/test_{human,augmented}.json``, images from
  ``ChartQA_TEST_IMG_ROOT``); ChartMoE-Data's ``chartqa.json`` is its SFT
  data (``chartmoe/train/data/sft.txt``: conversations of the train split),
  not an evaluation file.
- ``HuggingFaceM4/ChartQA`` (its dataset card: ``image`` an embedded
  image, ``query``, ``label`` a list of strings, ``human_or_machine`` a
  class label 0 = human, 1 = machine; shards ``data/{train,val,test}-*``;
  a snapshot folder is evaluated on its test split).
- ``lmms-lab/ChartQA`` (written by lmms-eval's
  ``tasks/chartqa/upload_chartqa.py``, read by its ``utils.py``: ``type``
  ``human_test`` / ``augmented_test``, ``question``, ``answer``, ``image``;
  one split, ``data/test-*``).
- ``ahmed-masry/ChartQA`` (the ChartQA authors' hub copy; its dataset
  card, huggingface.co/datasets/ahmed-masry/ChartQA ``README.md``:
  ``imgname``, ``query``, ``label`` and ``type`` strings, ``image`` binary
  (the PNG's bytes); shards ``data/{train,val,test}-*``, a snapshot folder
  evaluated on its test split; the ``ChartQA Dataset.zip`` beside them is
  the GitHub layout above). ``type`` is ``human`` / ``augmented``: the card
  gives no values, these are the ones scripts reading it filter on
  (another value stops, naming the values expected). Its records also have
  the GitHub JSON's fields: it is matched first.
- VLMEvalKit's ``ChartQA_TEST.tsv`` (:mod:`.vlmevalkit`; its columns
  ``index``, ``image``, ``question``, ``answer``, ``split``
  ``test_human`` / ``test_augmented``, as in VLMEvalKit's own records of
  it, ``assets/benchmarks/vila_*/vila_*_ChartQA_TEST.xlsx`` and
  ``*_acc.csv`` of commit c03bc048, whose per-split rows
  ``ImageVQADataset.evaluate_heuristic`` makes from ``split``). The answer
  is kept as written, as every other format keeps it: VLMEvalKit's scorer
  would read ChartQA's answers ``[2014, 2016]`` as two accepted answers
  (:func:`.vlmevalkit.answers`), which the other formats cannot.
"""
import glob
import os.path as osp
import re

from ...prompts import PROMPTS
from .. import chartmoe_reference as reference
from ..metrics import (TOLERANCES, accuracy_table, extract_program,
                       normalise_pot_output, relaxed_correct)
from .base import BENCHMARKS, Benchmark, Format, Protocol, Sample, SchemaError
from . import vlmevalkit

OURS = Protocol(
    'ours', lambda mode, question: PROMPTS[mode] + question, extract_program,
    lambda stdout: '' if stdout is None else normalise_pot_output(stdout),
    relaxed_correct,
    about="ChartQA's relaxed accuracy (an empty answer is wrong; 45%, "
    '1,234 and $12 read as numbers)')


def chartmoe_protocol(pot_idx=0):
    """ChartMoE's ``eval_ChartQA.py``: its instructions with no space before
    the question (PoT ``pot_idx`` 0, its default, or 1, the prompt of the
    reproduced checkpoint's numbers), its code extraction, True/False ->
    Yes/No, its relaxed accuracy (first number, yes/no and substring
    rules; an empty answer can count as right there)."""
    instruction = {'short': reference.SHORT_ANSWER_INSTRUCTION,
                   'pot': reference.POT_INSTRUCTIONS[pot_idx]}
    return Protocol(
        'chartmoe' + (f'-pot{pot_idx}' if pot_idx else ''),
        lambda mode, question: instruction[mode] + question,
        reference.extract_program, reference.pot_answer,
        reference.relaxed_score,
        about=f"ChartMoE's eval_ChartQA.py with its PoT prompt {pot_idx}")


def _labels(label):
    return tuple(map(str, label)) if isinstance(label, (list, tuple)) else (
        str(label),)


def _samples(records, file, split_of, image_of, question, label):
    return [Sample(uid=f'{osp.basename(file)}#{i}',
                   split=split_of(record, f'{file}[{i}]'),
                   image=image_of(record), question=record[question],
                   labels=_labels(record[label]))
            for i, record in enumerate(records)]


def _github(records, file, image_folder):
    folder = image_folder or osp.join(osp.dirname(file), 'png')
    split = re.sub(r'^(train|val|test)_', '', osp.splitext(
        osp.basename(file))[0])
    return _samples(records, file, lambda record, where: split,
                    lambda record: osp.join(folder, record['imgname']),
                    'query', 'label')


def _split_by(field, names):
    """A record's split read from ``field`` through ``names``; another
    value stops with the file, the record and the values expected."""
    def split_of(record, where):
        if record[field] not in names:
            raise SchemaError(f'{where}: {field} is {record[field]!r}, '
                              f'expected one of {sorted(names)}')
        return names[record[field]]
    return split_of


def _huggingface_m4(records, file, image_folder):
    return _samples(records, file, _split_by(
        'human_or_machine', {0: 'human', 1: 'augmented'}),
        lambda record: record['image'], 'query', 'label')


def _lmms_lab(records, file, image_folder):
    return _samples(records, file, _split_by(
        'type', {'human_test': 'human', 'augmented_test': 'augmented'}),
        lambda record: record['image'], 'question', 'answer')


def _ahmed_masry(records, file, image_folder):
    return _samples(records, file, _split_by(
        'type', {'human': 'human', 'augmented': 'augmented'}),
        lambda record: record['image'], 'query', 'label')


_TSV_SPLIT = _split_by('split', {'test_human': 'human',
                                 'test_augmented': 'augmented'})


def _vlmevalkit(record, image, file):
    where = f"{file}[index {record['index']}]"
    return Sample(uid=record['index'], split=_TSV_SPLIT(record, where),
                  image=image, question=record['question'],
                  labels=(record['answer'],))


FORMATS = (
    Format('ahmed-masry/ChartQA parquet',
           ('imgname', 'query', 'label', 'type', 'image'),
           'the snapshot folder (its test split) or a data/*.parquet shard; '
           'images embedded', _ahmed_masry),
    Format('ChartQA GitHub JSON', ('imgname', 'query', 'label'),
           "'ChartQA Dataset/test/' (test_human.json, test_augmented.json; "
           'images in png/ or --image-folder), or one such file', _github),
    Format('HuggingFaceM4/ChartQA parquet',
           ('image', 'query', 'label', 'human_or_machine'),
           'the snapshot folder (its test split) or a data/*.parquet shard; '
           'images embedded', _huggingface_m4),
    Format('lmms-lab/ChartQA parquet', ('type', 'question', 'answer',
                                        'image'),
           'the snapshot folder or a data/test-*.parquet shard; images '
           'embedded', _lmms_lab),
    vlmevalkit.tsv_format('ChartQA_TEST', ('split',), _vlmevalkit),
)


@BENCHMARKS.register_module(name='chartqa')
class ChartQA(Benchmark):
    name = 'chartqa'
    title = 'ChartQA'
    metric = 'relaxed accuracy (%)'
    formats = FORMATS
    modes = ('short', 'pot')
    protocols = {p.name: p for p in (OURS, chartmoe_protocol(0),
                                     chartmoe_protocol(1))}
    split_order = ('human', 'augmented')

    def files(self, path):
        """ChartQA's GitHub layout in a folder: ``test_*.json`` there or in
        its ``test/`` (never the per-chart ``annotations/*.json``); any
        other folder as the hub's (:meth:`Benchmark.files`)."""
        if osp.isdir(path):
            for folder in (path, osp.join(path, self.eval_split)):
                found = sorted(glob.glob(osp.join(
                    glob.escape(folder), f'{self.eval_split}_*.json')))
                if found:
                    return found
        return super().files(path)

    def score(self, samples, answers, protocol):
        """Rows ``{query, label, correct: {tolerance: bool}}``; table
        ``{Human, Augmented, ..., Averaged: {'0.05', '0.1', '0.2': %}}``."""
        rows, correct = [], {}
        for sample, answer in zip(samples, answers):
            right = {str(t): answer is not None and bool(
                protocol.correct(answer, list(sample.labels), t))
                for t in TOLERANCES}
            labels = list(sample.labels)
            rows.append({'query': sample.question,
                         'label': labels[0] if len(labels) == 1 else labels,
                         'correct': right})
            split = correct.setdefault(sample.split, {t: [] for t in right})
            for t, ok in right.items():
                split[t].append(ok)
        order = sorted(correct, key=lambda s: (
            self.split_order.index(s) if s in self.split_order else
            len(self.split_order)))
        return rows, accuracy_table({s.capitalize(): correct[s]
                                     for s in order})
