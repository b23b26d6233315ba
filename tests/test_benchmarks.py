"""ChartBench, ChartFC, ChartCheck and PlotQA on the benchmark seam: small
offline replicas of every format each is downloaded in (written here in
the exact schema: the repositories' JSON / JSONL with the charts beside,
parquet with the image embedded as ``{bytes, path}``), each scorer on hand
cases from the benchmark's paper or code and their edge cases, a file of
another benchmark, the shared runner end to end with a fake model, and
one lmms-eval run of the four tasks on a ChartMoE stand-in."""
import io
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from xtuner_chartmoe.evaluation.benchmarks import get_benchmark
from xtuner_chartmoe.evaluation.benchmarks.base import SchemaError
from xtuner_chartmoe.evaluation.benchmarks.chartbench import (
    chartbench_relaxed, prompt)
from xtuner_chartmoe.evaluation.benchmarks.claims import (
    read_with, verdict, verification_scores)
from xtuner_chartmoe.evaluation.benchmarks.runner import run
from xtuner_chartmoe.families.base import ChatModel


def png(path, colour='steelblue'):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (40, 30), colour).save(path)
    return path


def png_bytes(colour='darkorange'):
    buffer = io.BytesIO()
    Image.new('RGB', (40, 30), colour).save(buffer, format='PNG')
    return buffer.getvalue()


def write_parquet(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


# ChartBench's test.jsonl (github.com/IDEA-FinAI/ChartBench): a judgement
# pair per task and an NQA question per chart.
CHARTBENCH = [
    {'id': 0, 'image': './data/test/line/line_single/chart_0/image.png',
     'type': {'chart': 'line', 'image': 'line_single', 'task': 'CR',
              'QA': 'Acc+'},
     'conversation': [{'label': 'Yes', 'query': 'This graph is a line chart.'},
                      {'label': 'No', 'query': 'This graph is a pie chart.'}]},
    {'id': 1, 'image': './data/test/line/line_single/chart_0/image.png',
     'type': {'chart': 'line', 'image': 'line_single', 'task': 'VE',
              'QA': 'Acc+'},
     'conversation': [{'label': 'Yes', 'query': 'The value at 2020 is 70.'},
                      {'label': 'No', 'query': 'The value at 2020 is 62.'}]},
    {'id': 2, 'image': './data/test/line/line_single/chart_0/image.png',
     'type': {'chart': 'line', 'image': 'line_single', 'task': 'NQA',
              'QA': 'GPT-acc'},
     'conversation': [{'label': '100.0',
                       'query': 'What is the value at 2021?'}]},
    {'id': 3, 'image': './data/test/radar/radar_single_wi_anno/chart_1/'
     'image.png', 'type': {'chart': 'radar', 'image': 'radar_single_wi_anno',
                           'task': 'GC', 'QA': 'Acc+'},
     'conversation': [{'label': 'Yes', 'query': 'A is the highest.'},
                      {'label': 'No', 'query': 'B is the highest.'}]},
    {'id': 4, 'image': './data/test/radar/radar_single_wi_anno/chart_1/'
     'image.png', 'type': {'chart': 'radar', 'image': 'radar_single_wi_anno',
                           'task': 'NQA', 'QA': 'GPT-acc'},
     'conversation': [{'label': '0.03', 'query': 'What is the share of C?'}]},
]
# The replies of a model: pair 0 right, pair 1 "yes" twice (one judgement
# wrong), pair 3 right; NQA 105 for 100 (5 %: right), 0 for 0.03.
CHARTBENCH_REPLIES = {
    'This graph is a line chart.': 'Yes.', 'This graph is a pie chart.': 'no',
    'The value at 2020 is 70.': 'Yes', 'The value at 2020 is 62.': 'yes',
    'What is the value at 2021?': '105', 'A is the highest.': '[yes]',
    'B is the highest.': 'No, B is not.', 'What is the share of C?': '0',
}


def chartbench_replica(root):
    folder = root / 'ChartBench'
    folder.mkdir(parents=True)
    (folder / 'test.jsonl').write_text(
        ''.join(json.dumps(r) + '\n' for r in CHARTBENCH))
    for record in CHARTBENCH:
        png(folder / record['image'])
    return folder / 'test.jsonl'


# ChartFC (github.com/mubasharaak/ChartFC_chartBERT, code/utils.py): qa/
# files of {question, answer 1|0, image_filename, img_text}, images/.
CHARTFC = [
    {'question': 'Spain won more medals than Italy.', 'answer': 1,
     'image_filename': '1-1000-1_0.png',
     'img_text': [[10, 20, 30, 8, 0, 0, 'Spain'], [5, 6, 7, 8, 1, 0, 12]]},
    {'question': 'Italy won the most medals.', 'answer': 0,
     'image_filename': '1-1000-1_0.png', 'img_text': []},
    {'question': 'France won 3 medals.', 'answer': 1,
     'image_filename': '1-1001-1_0.png', 'img_text': []},
]
CHARTFC_REPLIES = {'Spain won more medals than Italy.': 'Yes',
                   'Italy won the most medals.': 'yes',
                   'France won 3 medals.': 'The chart shows 3.'}


def chartfc_replica(root):
    folder = root / 'ChartFC'
    (folder / 'qa').mkdir(parents=True)
    for name in ('train', 'valid', 'test'):
        (folder / 'qa' / f'{name}_barplot_seaborn_diverse_charts.json'
         ).write_text(json.dumps(CHARTFC))
    for record in CHARTFC:
        png(folder / 'images' / record['image_filename'])
    return folder / 'qa'


# ChartCheck (github.com/mubasharaak/ChartCheck, data/ChartCheck_final/
# validation.json): chart_img a URL, label TRUE / FALSE.
def chartcheck_record(claim, label, chart):
    return {'db_id': f'id-{claim[:4]}',
            'chart_img': f'https://chartfc.s3.amazonaws.com/{chart}',
            'caption': 'A chart.', 'label': label, 'claim': claim,
            'explanation': 'Because.', 'claim_rewritten': -1,
            'explanation_rewritten': -1}


CHARTCHECK = {
    'test': [chartcheck_record('Coal is the largest source.', 'TRUE',
                               'Energy_mix%2C_2019.png'),
             chartcheck_record('Gas is the largest source.', 'FALSE',
                               'Energy_mix%2C_2019.png')],
    'test_two': [chartcheck_record('Hydro grew in 2010.', 'TRUE',
                                   'Hydro.PNG')],
}
CHARTCHECK_REPLIES = {'Coal is the largest source.': 'True.',
                      'Gas is the largest source.': 'REFUTES',
                      'Hydro grew in 2010.': 'no'}


def chartcheck_replica(root):
    folder = root / 'ChartCheck'
    folder.mkdir(parents=True)
    for split, records in CHARTCHECK.items():
        (folder / f'{split}.json').write_text(json.dumps(records, indent=4))
    (folder / 'validation.json').write_text(json.dumps(CHARTCHECK['test']))
    png(folder / 'images' / 'Energy_mix,_2019.png')
    png(folder / 'images' / 'Hydro.PNG')
    return folder


# PlotQA (github.com/NiteshMethani/PlotQA, PlotQA_Dataset.md): test/
# qa_pairs_V1.json = {"qa_pairs": [...]}, test/png/<image_index>.png.
PLOTQA = [
    {'image_index': 0, 'question_string': 'What is the maximum value?',
     'answer': 12.5, 'answer_bbox': {'x': 1.0, 'y': 2.0, 'w': 3.0, 'h': 4.0},
     'template': 'min_max', 'type': 'vbar_categorical', 'question_id': 0},
    {'image_index': 0, 'question_string': 'Is the bar of 2001 higher?',
     'answer': 'Yes', 'answer_bbox': [], 'template': 'compare',
     'type': 'vbar_categorical', 'question_id': 1},
    {'image_index': 1, 'question_string': 'What is the difference?',
     'answer': 0, 'answer_bbox': [], 'template': 'arithmetic',
     'type': 'line', 'question_id': 2},
]
PLOTQA_REPLIES = {'What is the maximum value?': '13.125',  # exactly 5 %
                  'Is the bar of 2001 higher?': 'yes',
                  'What is the difference?': '0.01'}  # 0: exact only


def plotqa_replica(root):
    folder = root / 'PlotQA' / 'test'
    folder.mkdir(parents=True)
    (folder / 'qa_pairs_V1.json').write_text(json.dumps(
        {'qa_pairs': PLOTQA}))
    (folder / 'annotations.json').write_text(json.dumps(
        [{'models': [], 'type': 'line', 'general_figure_info': {},
          'image_index': 0}]))
    for i in (0, 1):
        png(folder / 'png' / f'{i}.png')
    return folder


class CannedChat(ChatModel):
    """A ChatModel that answers from ``replies`` (question text -> reply)
    by the question its prompt carries, and records the prompts."""

    family = 'canned'

    def __init__(self, replies):
        self.replies, self.prompts = replies, []

    def answer(self, images, questions, max_new_tokens=500,
               return_routing=False):
        assert all(isinstance(i, Image.Image) for i in images)
        self.prompts += questions
        replies = [next(r for q, r in self.replies.items() if q in prompt)
                   for prompt in questions]
        return (replies, None) if return_routing else replies

    def encode_images(self, images):
        return torch.zeros(len(images), 1, 1), None

    @property
    def expert_names(self):
        return []

    @property
    def connector(self):
        return None


# -- reading replies -------------------------------------------------------

@pytest.mark.parametrize('reply, expected', [
    ('Yes', True), ('**Yes.**', True), ('[no]', False), ('  True, because',
                                                         True),
    ('REFUTES', False), ('Supported.', True), ('"No"', False),
    ('Not supported', False), ('The claim is true.', None), ('', None),
    (None, None), ('42', None)])
def test_verdict_is_the_first_word(reply, expected):
    assert verdict(reply) is expected


# -- scorers on hand cases ---------------------------------------------------

def test_verification_scores_macro_f1_as_scikit_learn():
    from sklearn.metrics import f1_score
    gold, predicted = [True, True, False, True], [True, False, False, False]
    scores = verification_scores(gold, predicted)
    assert scores['accuracy'] == 50.0
    assert scores['macro F1'] == pytest.approx(
        100 * f1_score(gold, predicted, average='macro'))
    # one class absent from gold: its F1 (0) still counts, as sklearn's
    gold, predicted = [True, True], [True, False]
    scores = verification_scores(gold, predicted)
    assert scores['F1 refutes'] == 0.0
    assert scores['macro F1'] == pytest.approx(
        100 * f1_score(gold, predicted, average='macro'))  # 33.33
    # a class neither gold nor predicted is left out
    scores = verification_scores([True, True], [True, True])
    assert 'F1 refutes' not in scores and scores['macro F1'] == 100.0
    # no verdict: a miss of the gold class, a prediction of neither
    scores = verification_scores([True, False], [True, None])
    assert scores == {'accuracy': 50.0, 'macro F1': 50.0,
                      'F1 supports': 100.0, 'F1 refutes': 0.0, 'unparsed': 1}


def test_claim_prompt_and_the_authors_exact_rule():
    bench = get_benchmark('chartcheck')
    ours, exact = bench.protocols['ours'], bench.protocols['exact']
    assert ours.prompt('short', 'A is high.') == (
        'is the following claim supported by the chart: A is high. (Yes/No)')
    assert [read_with(exact, a) for a in ('Yes', 'No', 'yes', 'Yes.')] == [
        True, False, None, None]
    assert [read_with(ours, a) for a in ('Yes', 'No', 'yes', 'Yes.')] == [
        True, False, True, True]


def test_chartbench_relaxed_is_called_as_chartbench_calls_it():
    """stat_all_metric.py passes the model's answer as the target: the 5 %
    are of the answer, 'x%' answers also match x/100, an answer of 0
    matches any label up to 0.05."""
    assert chartbench_relaxed('105', '100')  # 5/105 = 4.8 %
    assert not chartbench_relaxed('95.2', '100')  # 4.8/95.2 = 5.04 %
    assert chartbench_relaxed('0', '0.03')
    assert chartbench_relaxed('45%', '0.45')
    assert not chartbench_relaxed('1,234', '1234')  # float() only
    assert chartbench_relaxed('Apple', 'apple')


def test_chartbench_protocols_on_hand_cases():
    bench = get_benchmark('chartbench')
    ours, theirs = bench.protocols['ours'], bench.protocols['chartbench']
    assert ours.correct('95.2', ('100',))  # 4.8 % of the label
    assert not theirs.correct('95.2', ('100',))
    assert ours.correct('105', ('100',)) and not ours.correct('105.1',
                                                              ('100',))
    assert not ours.correct('0', ('0.03',)) and theirs.correct('0', ('0.03',))
    # judgements: the first word (ours), "yes" anywhere (ChartBench's)
    assert not ours.correct('The answer is yes.', ('Yes',))
    assert theirs.correct('The answer is yes.', ('Yes',))
    assert theirs.correct('I cannot tell', ('No',))
    assert not ours.correct('I cannot tell', ('No',))


def test_chartbench_prompts():
    assert prompt('It is a line chart.', judged=True) == (
        'Question: It is a line chart. Please answer yes or no. Answer:')
    assert prompt('What is A?', judged=False) == (
        'Answer the question using a single word or phrase. What is A?')


def chartbench_samples(tmp_path):
    return get_benchmark('chartbench').load(str(chartbench_replica(tmp_path)))


def test_chartbench_acc_plus_pair_with_one_wrong(tmp_path):
    bench = get_benchmark('chartbench')
    samples = chartbench_samples(tmp_path)
    answers = [CHARTBENCH_REPLIES[str(s.question)] for s in samples]
    rows, table = bench.score(samples, answers, bench.protocols['ours'])
    # pairs 0 and 3 right, pair 1 judged yes twice: Acc+ 2/3, Acc 5/6,
    # CoR 1/3; NQA 105 for 100 right, 0 for 0.03 wrong
    assert table['all'] == pytest.approx(
        {'Acc+': 200 / 3, 'Acc': 500 / 6, 'CoR': 100 / 3, 'NQA': 50.0})
    assert table['line'] == pytest.approx(
        {'Acc+': 50.0, 'Acc': 75.0, 'CoR': 50.0, 'NQA': 100.0})
    assert table['VE'] == {'Acc+': 0.0, 'Acc': 50.0, 'CoR': 100.0}
    assert table['annotated']['Acc+'] == 100.0  # radar_single_wi_anno
    assert list(table) == ['all', 'regular', 'extra', 'line', 'radar', 'CR',
                           'VE', 'GC', 'annotated', 'unannotated']
    assert [r['pair_correct'] for r in rows if 'pair_correct' in r] == [
        True, True, False, False, True, True]
    # ChartBench's own rule: 0 for 0.03 counts (the answer is the target)
    _, table = bench.score(samples, answers, bench.protocols['chartbench'])
    assert table['all']['NQA'] == 100.0
    # no answer (an unreadable image): wrong, and its pair with it
    _, table = bench.score(samples, [None] + answers[1:],
                           bench.protocols['ours'])
    assert table['CR']['Acc+'] == 0.0


def test_plotqa_relaxed_accuracy_at_the_boundaries():
    protocol = get_benchmark('plotqa').protocols['ours']
    assert protocol.correct('13.125', ['12.5'], 0.05)  # exactly 5 %
    assert not protocol.correct('13.2', ['12.5'], 0.05)
    assert protocol.correct('yes', ['Yes'], 0.05)
    assert not protocol.correct('0.01', ['0'], 0.05)  # 0: exact
    assert not protocol.correct('', ['0'], 0.05)


# -- formats -----------------------------------------------------------------

def test_chartbench_jsonl_and_parquet_with_embedded_images(tmp_path):
    bench = get_benchmark('chartbench')
    samples = chartbench_samples(tmp_path)
    assert [s.uid for s in samples] == ['0_0', '0_1', '1_0', '1_1', '2',
                                        '3_0', '3_1', '4']
    assert {s.split for s in samples} == {'test'}
    assert all(open(s.image, 'rb') for s in samples)
    assert samples[0].meta['judged'] and not samples[4].meta['judged']
    # --image-folder stands for ChartBench's ./data
    moved = bench.load(str(tmp_path / 'ChartBench' / 'test.jsonl'),
                       image_folder='/charts')
    assert moved[0].image == '/charts/test/line/line_single/chart_0/image.png'
    embedded = [dict(r, image={'bytes': png_bytes(), 'path': 'image.png'})
                for r in CHARTBENCH]
    parquet = write_parquet(tmp_path / 'hub' / 'test.parquet', embedded)
    samples = bench.load(str(parquet))
    assert len(samples) == 8 and samples[0].image['bytes'] == png_bytes()


def test_chartfc_reads_the_test_file_of_its_qa_folder(tmp_path):
    samples = get_benchmark('chartfc').load(str(chartfc_replica(tmp_path)))
    assert len(samples) == 3 and {s.split for s in samples} == {'test'}
    assert [s.labels for s in samples] == [('supports',), ('refutes',),
                                           ('supports',)]
    assert samples[0].image == str(
        tmp_path / 'ChartFC' / 'images' / '1-1000-1_0.png')
    assert all(open(s.image, 'rb') for s in samples)


def test_chartcheck_test_sets_and_chart_urls(tmp_path):
    samples = get_benchmark('chartcheck').load(
        str(chartcheck_replica(tmp_path)))
    assert [(s.split, s.labels[0]) for s in samples] == [
        ('test_one', 'supports'), ('test_one', 'refutes'),
        ('test_two', 'supports')]
    assert samples[0].image.endswith('images/Energy_mix,_2019.png')
    assert all(open(s.image, 'rb') for s in samples)


def test_plotqa_qa_pairs_and_parquet(tmp_path):
    bench = get_benchmark('plotqa')
    samples = bench.load(str(plotqa_replica(tmp_path)))
    assert [(s.split, s.labels, s.category) for s in samples] == [
        ('V1', ('12.5',), 'min_max'), ('V1', ('Yes',), 'compare'),
        ('V1', ('0',), 'arithmetic')]
    assert samples[2].image.endswith('test/png/1.png')
    embedded = [dict(r, answer=str(r['answer']), answer_bbox=None,
                     image={'bytes': png_bytes(), 'path': None})
                for r in PLOTQA]
    samples = bench.load(str(write_parquet(
        tmp_path / 'hub' / 'data' / 'test-00000-of-00001.parquet',
        embedded)))
    assert [s.split for s in samples] == ['test'] * 3
    assert samples[0].image['bytes'] == png_bytes()


def test_a_file_of_another_benchmark_is_named(tmp_path):
    chartfc = (chartfc_replica(tmp_path) /
               'test_barplot_seaborn_diverse_charts.json')
    with pytest.raises(SchemaError) as err:
        get_benchmark('chartbench').load(str(chartfc))
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith(f'{chartfc}: not a ChartBench file')
    assert "fields found ['answer', 'image_filename', 'img_text', " \
        "'question']" in message
    assert "ChartBench JSONL: ['conversation', 'id', 'image', 'type']" \
        in message
    with pytest.raises(SchemaError, match='not a PlotQA file'):
        get_benchmark('plotqa').load(str(chartbench_replica(tmp_path)))


# -- the runner, end to end with a fake model ------------------------------

@pytest.mark.parametrize('name, replica, replies, protocols, expected', [
    ('chartbench', chartbench_replica, CHARTBENCH_REPLIES,
     ('ours', 'chartbench'),
     {'ours': {'Acc+': 200 / 3, 'NQA': 50.0},
      'chartbench': {'Acc+': 200 / 3, 'NQA': 100.0}}),
    ('chartfc', chartfc_replica, CHARTFC_REPLIES, ('ours',),
     {'ours': {'accuracy': 100 / 3, 'unparsed': 1}}),
    ('chartcheck', chartcheck_replica, CHARTCHECK_REPLIES, ('ours', 'exact'),
     {'ours': {'accuracy': 100.0, 'macro F1': 100.0},
      'exact': {'accuracy': 0.0, 'unparsed': 2}}),
    ('plotqa', plotqa_replica, PLOTQA_REPLIES, ('ours',),
     {'ours': {'accuracy': 200 / 3, 'n': 3}}),
])
def test_runner_end_to_end(tmp_path, name, replica, replies, protocols,
                           expected):
    bench = get_benchmark(name)
    chat = CannedChat(replies)
    out = tmp_path / 'out'
    results, text = run(bench, chat, str(replica(tmp_path)), str(out),
                        modes=('short',), protocols=protocols)
    for protocol, values in expected.items():
        first = next(iter(results['scores'][protocol]['short'].values()))
        assert first == pytest.approx({**first, **values})
    assert bench.title in text
    if name == 'chartbench':  # its prompts by kind of question
        assert sum('Please answer yes or no.' in p for p in chat.prompts) == 6
        assert sum(p.startswith('Answer the question using a single word')
                   for p in chat.prompts) == 2
    # one generation served every protocol (the same prompts)
    assert len(chat.prompts) == sum(results['samples'].values())
    rows = [json.loads(line) for f in sorted(out.glob('answers_*_short.jsonl'))
            for line in f.read_text().splitlines()]
    assert len(rows) == len(chat.prompts) and all('correct' in r for r in rows)
    # resumed: nothing generated again
    again = CannedChat(replies)
    run(bench, again, str(replica(tmp_path / 'again')), str(out),
        modes=('short',), protocols=protocols)
    assert again.prompts == []


def test_plotqa_program_of_thought_in_the_sandbox(tmp_path):
    """PoT: each reply's program runs in the sandbox, its last printed
    line is the answer (True -> Yes); a failing program is wrong."""
    programs = {
        'What is the maximum value?': '```python\nprint(12.5 + 0.5)\n```',
        'Is the bar of 2001 higher?': 'print(3 > 2)',
        'What is the difference?': 'print(1 / 0)'}
    results, _ = run(get_benchmark('plotqa'), CannedChat(programs),
                     str(plotqa_replica(tmp_path)), str(tmp_path / 'out'),
                     modes=('pot',))
    assert results['scores']['ours']['pot']['V1'] == pytest.approx(
        {'accuracy': 200 / 3, 'n': 3})


# -- lmms-eval ---------------------------------------------------------------

def test_lmms_eval_runs_the_four_tasks(tmp_path):
    """One lmms-eval run of chartbench, chartfc, chartcheck and plotqa on a
    ChartMoE stand-in (random weights: the scores are not checked, only
    that every task ran through the benchmarks' scorers)."""
    from xtuner_chartmoe.apps.lmms import TASKS_DIR
    from xtuner_chartmoe.families.ixc2.standin import build_ixc2_standins
    paths = build_ixc2_standins(
        tmp_path / 'standin', llm_layers=1, vision_layers=1,
        repos=('IDEA-FinAI/chartmoe',), dtype=torch.float32, hidden_size=64,
        intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
        plora_r=8, plora_alpha=16, vision_config=dict(
            hidden_size=32, intermediate_size=64, num_attention_heads=2))
    data = tmp_path / 'data'
    chartbench_replica(data)
    chartfc_replica(data)
    chartcheck_replica(data)
    plotqa_replica(data)
    out = tmp_path / 'lmms'
    env = {k: v for k, v in os.environ.items() if k not in (
        'RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    env.update(HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1',
               HF_HOME=str(tmp_path / 'hf'))
    result = subprocess.run(
        [sys.executable, '-m', 'lmms_eval', '--model', 'chartmoe',
         '--model_args', f"pretrained={paths['IDEA-FinAI/chartmoe']},"
         'max_new_tokens=4', '--batch_size', '4', '--limit', '5',
         '--tasks', 'chartbench,chartfc,chartcheck,plotqa',
         '--include_path', TASKS_DIR, '--log_samples', '--output_path',
         str(out)], cwd=data, capture_output=True, text=True,
        env=env)
    found = list(out.glob('*/*_results.json'))
    assert found, result.stdout[-3000:] + result.stderr[-3000:]
    scores = json.loads(found[0].read_text())['results']
    for task, metrics in (('chartbench', ('acc_plus', 'nqa')),
                          ('chartfc', ('accuracy', 'macro_f1')),
                          ('chartcheck_test_one', ('accuracy', 'macro_f1')),
                          ('chartcheck_test_two', ('accuracy', 'macro_f1')),
                          ('plotqa', ('accuracy',))):
        for metric in metrics:
            assert 0 <= scores[task][f'{metric},none'] <= 100, (task, metric)
    logged = list(out.glob('*/*_samples_chartbench.jsonl'))
    rows = sorted((json.loads(line) for line in
                   logged[0].read_text().splitlines()),
                  key=lambda row: row['doc_id'])
    # each logged sample carries its document and reply to the scorer
    assert [row['acc_plus']['uid'] for row in rows] == [
        '0_0', '0_1', '1_0', '1_1', '2']
    assert rows[0]['acc_plus']['question'] == 'This graph is a line chart.'
