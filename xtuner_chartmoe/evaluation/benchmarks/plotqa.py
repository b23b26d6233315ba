"""PlotQA (Methani, Ganguly, Khapra and Kumar, "PlotQA: Reasoning over
Scientific Plots", WACV 2020, arXiv 1909.00997; github.com/NiteshMethani/
PlotQA): template questions about bar, line and dot-line plots of real
data, with answers from a fixed vocabulary or real numbers.

Metric: the paper's accuracy, which ChartQA took over as "relaxed
accuracy" (ChartQA, Masry et al. 2022, Sec. 5.1: "Following Methani et al.
(2020) ... correct if it is within 5% of the gold answer. For non-numeric
answers, we still need an exact match"), here
:func:`~xtuner_chartmoe.evaluation.metrics.relaxed_correct` at 0.05 (exact
when the answer is 0; text compared ignoring case). VLMEvalKit's ``PlotQA``
scores the same rule (``vlmeval/dataset/utils/vqa_eval.py``,
``relaxed_correctness``; it reads numbers by ``float()`` only and takes
"45%" as 0.45). Rows: the file's version (``V1`` / ``V2``), each question
template and each plot type, as the records name them (``template``,
``type``). PoT applies (mode ``pot``, run in the sandbox) as for ChartQA.
ChartMoE does not report PlotQA; one protocol, ours (ChartQA's prompts).

Format, as the authors distribute it (``PlotQA_Dataset.md`` of that
repository; the JSON's top level ``{"qa_pairs": [...]}`` as read by
loaders of it, e.g. a ``datasets`` builder: ``json.load(f)["qa_pairs"]``):
``<split>/qa_pairs_V1.json`` or ``qa_pairs_V2.json``, records
``{image_index, question_string, answer, answer_bbox, template, type,
question_id}``, the plots in ``<split>/png/<image_index>.png`` (or
``--image-folder``). The same records as a list, in JSON lines, or in
parquet with an ``image`` column (embedded ``{bytes, path}``) are read
too. VLMEvalKit's ``PlotQA.tsv`` (:mod:`.vlmevalkit`): the columns its
``PlotQA`` (``vlmeval/dataset/plotqa.py``) reads, ``index``, ``image``,
``question`` and ``answer`` (a list literal holds several,
:func:`.vlmevalkit.answers`, as its ``process_line`` reads it; the file
itself was not at hand); no template or plot type is read from it, so its
table has no rows of them; the split is the file's name.
Not read here: ``achang/plot_qa`` on the hub (its card: a plot and its
annotations' ``models`` as JSON text; no question-answer pairs).
"""
import dataclasses
import json
import os.path as osp
import re
from collections import defaultdict

from ...dataset.hub_files import parquet_split, read_records
from .base import BENCHMARKS, Benchmark, Format, Sample, SchemaError
from .chartqa import OURS
from . import vlmevalkit

PROTOCOL = dataclasses.replace(
    OURS, about="PlotQA's accuracy (5 % for numbers, exact text otherwise); "
    "ChartQA's prompts")
FIELDS = ('image_index', 'question_string', 'answer')


def read_qa_pairs(file):
    """The records of ``file``: PlotQA's ``{"qa_pairs": [...]}`` JSON, or
    any file :func:`~xtuner_chartmoe.dataset.hub_files.read_records`
    reads."""
    if file.endswith('.json'):
        with open(file, encoding='utf-8') as f:
            head = f.read(64).lstrip()
        if head.startswith('{'):
            with open(file, encoding='utf-8') as f:
                data = json.load(f)
            if isinstance(data, dict) and isinstance(data.get('qa_pairs'),
                                                     list):
                return data['qa_pairs']
    return read_records(file)


def _split(file):
    """``V1`` / ``V2`` for PlotQA's files, a hub shard's split, else the
    file's name."""
    name = osp.splitext(osp.basename(file))[0]
    version = re.search(r'V\d+', name, re.I)
    if version:
        return version.group().upper()
    return parquet_split(file) or name


def _plotqa(records, file, image_folder):
    folder = image_folder or osp.join(osp.dirname(file), 'png')
    split = _split(file)
    return [Sample(
        uid=f'{osp.basename(file)}#{i}', split=split,
        image=record.get('image') or osp.join(
            folder, f"{record['image_index']}.png"),
        question=record['question_string'], labels=(str(record['answer']),),
        category=str(record.get('template', '')),
        meta={'type': str(record.get('type', ''))})
        for i, record in enumerate(records)]


def _vlmevalkit(record, image, file):
    return Sample(uid=record['index'], split=vlmevalkit.split_of(file),
                  image=image, question=record['question'],
                  labels=vlmevalkit.answers(record['answer']),
                  meta={'type': ''})


@BENCHMARKS.register_module(name='plotqa')
class PlotQA(Benchmark):
    name = 'plotqa'
    title = 'PlotQA'
    metric = 'accuracy (%, numbers within 5 %)'
    formats = (Format(
        'PlotQA qa_pairs JSON', FIELDS,
        'test/qa_pairs_V1.json or qa_pairs_V2.json (plots in test/png/ or '
        '--image-folder), or the test/ folder', _plotqa),
        vlmevalkit.tsv_format('PlotQA', (), _vlmevalkit))
    modes = ('short', 'pot')
    protocols = {PROTOCOL.name: PROTOCOL}

    def files(self, path):
        """In a folder, its ``qa_pairs*`` files when it has any (PlotQA's
        split folders also hold ``annotations.json``)."""
        files = super().files(path)
        if osp.isfile(path):
            return files
        pairs = [f for f in files if osp.basename(f).startswith('qa_pairs')]
        return pairs or files

    def load(self, path, image_folder=None):
        """Every sample of ``path`` (:meth:`Benchmark.load`, PlotQA's own
        ``{"qa_pairs": [...]}`` files included)."""
        samples = []
        for file in self.files(path):
            records = read_qa_pairs(file)
            samples += self.format_of(records, file).to_samples(
                records, file, image_folder)
        if not samples:
            raise SchemaError(f'{path}: no PlotQA data file found')
        return samples

    def score(self, samples, answers, protocol):
        """Rows ``{question, label, template, type, correct}``; table rows
        per version, then template, then plot type: accuracy (%) and
        count."""
        rows, groups = [], [defaultdict(list) for _ in range(3)]
        for sample, answer in zip(samples, answers):
            ok = answer is not None and bool(protocol.correct(
                answer, list(sample.labels), 0.05))
            rows.append({'question': sample.question,
                         'label': sample.labels[0],
                         'template': sample.category,
                         'type': sample.meta['type'], 'correct': ok})
            for group, key in zip(groups, (
                    sample.split, sample.category, sample.meta['type'])):
                if key:
                    group[key].append(ok)
        return rows, {key: {'accuracy': 100.0 * sum(v) / len(v), 'n': len(v)}
                      for group in groups for key, v in sorted(group.items())}
