"""lmms-eval tasks for the chart benchmarks lmms-eval lacks (ChartBench,
ChartFC, ChartCheck, PlotQA), read and scored by the same code as ``chartmoe
eval``: the documents are the benchmark's samples
(:meth:`~xtuner_chartmoe.evaluation.benchmarks.base.Benchmark.load` on the
data file, every format it reads), the prompt its default protocol's, and
each metric's aggregation its ``score`` over the logged items.

Each task reads its data file at a path relative to the directory lmms-eval
runs in (:data:`DATA`; the task's YAML names the same file for lmms-eval,
which reads it as text and hands it to ``process_docs``: lmms-eval's JSON
loader cannot read PlotQA's or ChartFC's mixed-type columns)."""
import json
from functools import partial

from datasets import Dataset

from xtuner_chartmoe.dataset.hub_files import open_image
from xtuner_chartmoe.evaluation.benchmarks import get_benchmark
from xtuner_chartmoe.evaluation.benchmarks.base import Sample

DATA = {
    'chartbench': 'ChartBench/test.jsonl',
    'chartfc': 'ChartFC/qa/test_barplot_seaborn_diverse_charts.json',
    'chartcheck_test_one': 'ChartCheck/test.json',
    'chartcheck_test_two': 'ChartCheck/test_two.json',
    'plotqa': 'PlotQA/test/qa_pairs_V1.json',
}


def _benchmark(name):
    return get_benchmark(name.split('_test_')[0])


def _docs(task, dataset):
    """The task's samples as lmms-eval documents (``dataset``, the file as
    lmms-eval read it, is not used: the benchmark reads the file)."""
    samples = _benchmark(task).load(DATA[task])
    return Dataset.from_list([{
        'task': task, 'uid': s.uid, 'split': s.split,
        'question': s.question,
        'labels': list(s.labels), 'category': s.category,
        'meta': json.dumps(s.meta), 'image': s.image} for s in samples])


chartbench_docs = partial(_docs, 'chartbench')
chartfc_docs = partial(_docs, 'chartfc')
chartcheck_test_one_docs = partial(_docs, 'chartcheck_test_one')
chartcheck_test_two_docs = partial(_docs, 'chartcheck_test_two')
plotqa_docs = partial(_docs, 'plotqa')


def _sample(doc):
    return Sample(uid=doc['uid'], split=doc['split'], image=doc['image'],
                  question=doc['question'], labels=tuple(doc['labels']),
                  category=doc['category'], meta=json.loads(doc['meta']))


def doc_to_visual(doc):
    return [open_image(doc['image'])]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """The benchmark's default prompt (as ``chartmoe eval`` asks it)."""
    benchmark = _benchmark(doc['task'])
    return benchmark.prompt(_sample(doc), 'short',
                            next(iter(benchmark.protocols.values())))


def doc_to_target(doc):
    return ' | '.join(doc['labels'])


METRICS = {'chartbench': ('acc_plus', 'nqa'),
           'chartfc': ('accuracy', 'macro_f1'),
           'chartcheck': ('accuracy', 'macro_f1'), 'plotqa': ('accuracy',)}


def process_results(doc, results):
    """Each metric of the task gets the document and its reply (the
    aggregations score them together: ChartBench's pairs, F1)."""
    item = dict(doc, answer=str(results[0]).strip())
    return {metric: item for metric in METRICS[_benchmark(doc['task']).name]}


def _table(items):
    """The benchmark's table over the logged items (its default
    protocol)."""
    benchmark = _benchmark(items[0]['task'])
    protocol = next(iter(benchmark.protocols.values()))
    _, table = benchmark.score([_sample(item) for item in items],
                               [item['answer'] for item in items], protocol)
    return table


def _aggregate(row, column, items):
    """``table[row][column]`` (%), NaN where the items have none (e.g.
    ``--limit`` left no NQA question)."""
    table = _table(items)
    return table.get(row or next(iter(table)), {}).get(column, float('nan'))


acc_plus = partial(_aggregate, 'all', 'Acc+')
nqa = partial(_aggregate, 'all', 'NQA')
accuracy = partial(_aggregate, None, 'accuracy')
macro_f1 = partial(_aggregate, None, 'macro F1')
