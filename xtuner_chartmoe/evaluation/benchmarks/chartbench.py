"""ChartBench (Xu, Du, Qi, Xu, Yuan and Guo, "ChartBench: A Benchmark for
Complex Visual Reasoning in Charts", arXiv 2312.15915;
github.com/IDEA-FinAI/ChartBench, data on the hub as SincereX/ChartBench):
charts of 9 types (42 subtypes), mostly without data labels.

Questions (``test.jsonl``, one record per chart and task): judgement pairs
of the tasks CR (chart recognition), VE (value extraction), VC (value
comparison) and GC (global conception), a true assertion and a false one
about the same chart (``type.QA == "Acc+"``), and NQA, a question with a
number for answer (``type.QA == "GPT-acc"``).

Metrics (``Stat/stat_all_metric.py`` of that repository): **Acc+**, a pair
right only when the true assertion is judged yes and the false one no; Acc,
the share of single judgements right; CoR (confusion rate), pairs answered
the same way twice (here: pairs with exactly one judgement right, the same
thing when every reply is a yes or a no); **NQA**, relaxed accuracy (5 %).
Rows: all, regular (line, bar, pie) and extra chart types, each chart type
(the data's ``type.chart``; ``stat_all_metric.py`` groups by lists of
subtypes, in none of which is the repository's
``QA/Acc+/node_link/node_link_indir``), each task, charts with and without
data labels (``annotated`` / ``unannotated``: its ``wi_anno`` list of
subtypes). ChartMoE (arXiv 2409.03277, by ChartBench's authors) reports its
Acc+ and NQA; its repository has no ChartBench script: the authors' own
runs use ChartBench's ``Repos/utils.py`` with its prompt ``blip2 style``
for judgements and ``chartqa`` for NQA (``Repos/Ours/infer.py``,
``Repos/InternLM-XComposer-v2/infer.py``). VLMEvalKit's ``ChartBench``
(``vlmeval/dataset/chartbench.py``) scores with the same functions and adds
a "final" score pooling NQA and Acc+ items. No PoT mode: ``Repos/utils.py``
has PoT prompt styles (``nqa_pot``, ``acc_pot``) that the runs above do not
use.

Protocols (the same prompts, so one generation serves both):

- ``ours``: a judgement is read from the reply's first word
  (:func:`~.claims.verdict`; no verdict is wrong); NQA is ChartQA's relaxed
  accuracy (:func:`~xtuner_chartmoe.evaluation.metrics.relaxed_correct`:
  within 5 % of the label, exact when the label is 0, "1,234" / "45%" /
  "$12" read as numbers, text compared exactly ignoring case).
- ``chartbench``: ChartBench's ``stat_all_metric.py`` as written:
  "yes" anywhere in the reply is yes, anything else no (``fuzzy_match``);
  NQA by its ``relaxed_correctness`` called as it is called there, with the
  model's answer in the place of the target: the 5 % are of the answer,
  not of the label; an answer "x%" also matches x/100; an answer of 0
  matches any label <= 0.05 (the relative change is then the label
  itself, signed); numbers read by ``float()`` only. Its NQA answers are
  first passed through GPT (``Stat/gpt_filter.py``) to extract the
  number; that step is not run here (an offline evaluation), as in
  VLMEvalKit's ChartBench when no judge model is set.

Format: ChartBench's ``test.jsonl`` (``{id, image, type: {chart, image,
task, QA}, conversation: [{query, label}, ...]}``), the images at the
record's ``image`` (``./data/test/<chart>/<subtype>/chart_N/image.png``)
relative to the JSONL's folder, or with ``./data`` replaced by
``--image-folder`` (as its ``reset_image_root``). The same records in a
parquet file with the image embedded (``{bytes, path}``) are read too.

VLMEvalKit's ``ChartBench.tsv`` (:mod:`.vlmevalkit`): a row per question
with, beside ``index``, ``image``, ``question`` and ``answer``, the
columns VLMEvalKit's ``ChartBench.evaluate`` (``vlmeval/dataset/
chartbench.py``) reads: ``QA_type`` (``Acc+``; ``GPT-acc`` or ``NQA``),
``task`` and ``chart_type``, the subtype (``type.image`` of
``test.jsonl``: it is matched against lists of subtypes). The two
judgements of a pair are rows ``<id>_<k>`` (it groups rows by the part
of ``index`` before ``_``, in the order of ``k``); an answer that is a list
literal holds several (:func:`.vlmevalkit.answers`, as it reads them). The
chart type is the subtype's (:data:`SUBTYPES`). These columns are those
of VLMEvalKit's code; the file itself was not at hand.
"""
import os.path as osp
from collections import defaultdict

from ..metrics import relaxed_correct
from .base import BENCHMARKS, Benchmark, Format, Protocol, Sample
from .claims import verdict
from . import vlmevalkit

JUDGEMENT_PROMPT = 'Question: {} Please answer yes or no. Answer:'
NQA_PROMPT = 'Answer the question using a single word or phrase. {}'
REGULAR = ('line', 'bar', 'pie')
TASKS = ('CR', 'VE', 'VC', 'GC')
# stat_all_metric.py's metric_group['wi_anno']: subtypes with data labels.
ANNOTATED = frozenset({
    'horizontal_single_wi_anno', 'vertical_single_wi_anno', 'pie_pie',
    'pie_bar', 'radar_single_wi_anno', 'node_link_dir', 'node_link_undir',
    'ring_wi_anno', 'line_multi_wi_anno', 'line_single_wi_anno'})
CHART_ORDER = ('line', 'bar', 'pie', 'area', 'box', 'radar', 'scatter',
               'node', 'node_link', 'combination')
# test.jsonl's chart types and their subtypes (type.chart: type.image).
SUBTYPES = {
    'area': ('area', 'area_percent', 'area_stack'),
    'bar': ('horizontal_multi', 'horizontal_percent_stacked',
            'horizontal_single', 'horizontal_single_wi_anno',
            'horizontal_stacked', 'threeD_bar_multi', 'threeD_percent_stacked',
            'threeD_stacked', 'vertical_multi', 'vertical_percent_stacked',
            'vertical_single', 'vertical_single_wi_anno', 'vertical_stacked'),
    'box': ('box_h', 'box_v', 'stock'),
    'combination': ('bar_line', 'line_line', 'pie_bar', 'pie_pie'),
    'line': ('line_err', 'line_multi', 'line_multi_wi_anno', 'line_single',
             'line_single_wi_anno'),
    'node_link': ('node_link_dir', 'node_link_undir'),
    'pie': ('InteSun', 'pie', 'ring', 'ring_wi_anno', 'sector'),
    'radar': ('radar_multi', 'radar_multi_fill', 'radar_single',
              'radar_single_wi_anno'),
    'scatter': ('scatter_2d', 'scatter_2d_smooth', 'scatter_3d'),
}
CHART_OF = {sub: chart for chart, subs in SUBTYPES.items() for sub in subs}


def prompt(question, judged):
    """ChartBench's prompts: ``blip2 style`` for an assertion to judge
    (``judged``: an ``Acc+`` query), its ``chartqa`` prompt (without its
    ``user:`` / ``assistant:`` markers, the model's chat format has its
    own) for an NQA question."""
    return (JUDGEMENT_PROMPT if judged else NQA_PROMPT).format(question)


def is_judgement(labels):
    return str(labels[0]).lower() in ('yes', 'no')


def correct_ours(answer, labels):
    """Our rule: a judgement by the reply's first word, NQA by ChartQA's
    relaxed accuracy."""
    if is_judgement(labels):
        return verdict(answer) is (str(labels[0]).lower() == 'yes')
    return relaxed_correct(answer, list(labels))


def _float(text):
    try:
        return float(text)
    except ValueError:
        return None


def chartbench_relaxed(answer, label, max_relative_change=0.05):
    """``relaxed_correctness(target=answer, prediction=label)`` of
    ChartBench's ``stat_all_metric.py`` (the order it is called in)."""
    prediction = _float(label.rstrip('%') if label.endswith('%') else label)
    targets = None
    if answer.endswith('%'):
        number = _float(answer.rstrip('%'))
        targets = None if number is None else [number, number / 100.0]
    elif _float(answer) is not None:
        targets = [_float(answer)]
    if prediction is None or targets is None:
        return answer.lower() == label.lower()
    return any((prediction if t == 0 else abs(prediction - t) / abs(t))
               <= max_relative_change for t in targets)


def correct_chartbench(answer, labels):
    """ChartBench's rule: "yes" anywhere is yes; NQA by
    :func:`chartbench_relaxed` against any label."""
    if is_judgement(labels):
        return ('yes' in answer.lower()) is (str(labels[0]).lower() == 'yes')
    return any(chartbench_relaxed(answer.strip(), str(label))
               for label in labels)


PROTOCOLS = (
    Protocol('ours', correct=correct_ours,
             about="Acc+ with the reply's first word as the judgement; NQA "
             "by ChartQA's relaxed accuracy"),
    Protocol('chartbench', correct=correct_chartbench,
             about="ChartBench's stat_all_metric.py as written (without its "
             'GPT number extraction)'),
)


def _image(record, file, image_folder):
    image = record['image']
    if not isinstance(image, str):
        return image  # embedded
    if image_folder:
        rest = image[len('./data'):].lstrip('/') if image.startswith(
            './data') else image
        return osp.join(image_folder, rest)
    return osp.normpath(osp.join(osp.dirname(file), image))


def _chartbench(records, file, image_folder):
    split = osp.splitext(osp.basename(file))[0]
    samples = []
    for record in records:
        kind, image = record['type'], _image(record, file, image_folder)
        judged = kind['QA'] == 'Acc+'
        meta = {'pair': str(record['id']), 'task': kind['task'],
                'subtype': kind['image'], 'judged': judged}
        for k, turn in enumerate(record['conversation'][:2 if judged else 1]):
            label = turn['label']
            samples.append(Sample(
                uid=f"{record['id']}_{k}" if judged else str(record['id']),
                split=split, image=image,
                question=turn['query'],
                labels=tuple(map(str, label)) if isinstance(
                    label, list) else (str(label),),
                category=kind['chart'], meta=meta))
    return samples


def _vlmevalkit(record, image, file):
    """A row of VLMEvalKit's ``ChartBench.tsv``: the sample the JSONL's
    record gives for that question."""
    index, subtype = record['index'], record['chart_type']
    return Sample(
        uid=index, split=vlmevalkit.split_of(file), image=image,
        question=record['question'],
        labels=vlmevalkit.answers(record['answer']),
        category=CHART_OF.get(subtype, subtype),
        meta={'pair': index.split('_')[0], 'task': record['task'],
              'subtype': subtype, 'judged': record['QA_type'] == 'Acc+'})


def _percent(values):
    return 100.0 * sum(values) / len(values)


@BENCHMARKS.register_module(name='chartbench')
class ChartBench(Benchmark):
    name = 'chartbench'
    title = 'ChartBench'
    metric = 'Acc+ / Acc / CoR / NQA (%)'
    formats = (Format(
        'ChartBench JSONL', ('id', 'image', 'type', 'conversation'),
        'test.jsonl (images under ./data beside it, or --image-folder for '
        'its data/ folder)', _chartbench),
        vlmevalkit.tsv_format('ChartBench', ('QA_type', 'task',
                                             'chart_type'), _vlmevalkit))
    protocols = {p.name: p for p in PROTOCOLS}

    def prompt(self, sample, mode, protocol):
        """:func:`prompt` of the sample's kind, under either protocol."""
        return prompt(sample.question, sample.meta['judged'])

    def score(self, samples, answers, protocol):
        """Rows per sample ``{question, label, task, pair, correct[,
        pair_correct]}``; table rows all / regular / extra /
        chart types / tasks / annotated / unannotated, columns Acc+, Acc,
        CoR (over pairs and their judgements) and NQA (where the row has
        NQA questions)."""
        right = [answer is not None and bool(protocol.correct(
            answer, sample.labels)) for sample, answer in zip(samples,
                                                              answers)]
        pairs = defaultdict(dict)  # (split, pair) -> {label yes?: right}
        for sample, ok in zip(samples, right):
            if is_judgement(sample.labels):
                pairs[sample.split, sample.meta['pair']][
                    sample.labels[0].lower() == 'yes'] = ok
        rows, groups = [], defaultdict(lambda: defaultdict(list))
        counted = set()  # pairs already in the Acc+ / CoR columns
        for sample, ok in zip(samples, right):
            row = {'question': str(sample.question),
                   'label': list(sample.labels), 'task': sample.meta['task'],
                   'pair': sample.meta['pair'], 'correct': ok}
            keys = self._rows(sample)
            if is_judgement(sample.labels):
                key = sample.split, sample.meta['pair']
                pair = (pairs[key].get(True, False),
                        pairs[key].get(False, False))
                row['pair_correct'] = all(pair)
                for group in keys + (sample.meta['task'],):
                    groups[group]['Acc'].append(ok)
                    if key not in counted:
                        groups[group]['Acc+'].append(all(pair))
                        groups[group]['CoR'].append(pair[0] != pair[1])
                counted.add(key)
            else:
                for group in keys:
                    groups[group]['NQA'].append(ok)
            rows.append(row)
        order = ['all', 'regular', 'extra'] + sorted(
            {s.category for s in samples}, key=lambda c: (
                CHART_ORDER.index(c) if c in CHART_ORDER else len(
                    CHART_ORDER), c)) + list(TASKS) + [
                        'annotated', 'unannotated']
        table = {key: {column: _percent(groups[key][column])
                       for column in ('Acc+', 'Acc', 'CoR', 'NQA')
                       if groups[key][column]}
                 for key in order if key in groups}
        return rows, table

    @staticmethod
    def _rows(sample):
        """The table rows a sample counts in (besides its task's)."""
        annotated = sample.meta['subtype'] in ANNOTATED
        return ('all', 'regular' if sample.category in REGULAR else 'extra',
                sample.category, 'annotated' if annotated else 'unannotated')
