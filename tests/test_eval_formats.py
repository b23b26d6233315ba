"""The download formats added to the benchmark seam: VLMEvalKit's TSV files
(ChartQA_TEST.tsv, ChartBench.tsv, PlotQA.tsv: written here as VLMEvalKit's
``dump`` writes them, every cell quoted, the images base64 with a shared one
given by the ``index`` of its row, answers that are list literals) and
``ahmed-masry/ChartQA``'s parquet, each giving the samples and scores of the
same questions in the benchmark's own files; a TSV of another benchmark
and broken images."""
import base64
import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from xtuner_chartmoe.commands.cli import main as chartmoe
from xtuner_chartmoe.dataset.hub_files import read_tsv
from xtuner_chartmoe.evaluation.benchmarks import get_benchmark
from xtuner_chartmoe.evaluation.benchmarks.runner import load_samples, run

COLOURS = {'a.png': (200, 30, 30), 'b.png': (30, 30, 200)}


def png(name):
    buffer = io.BytesIO()
    Image.new('RGB', (24, 16), COLOURS[name]).save(buffer, 'PNG')
    return buffer.getvalue()


def write_pngs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in COLOURS:
        (folder / name).write_bytes(png(name))


def write_tsv(path, rows):
    """A VLMEvalKit TSV (``vlmeval/smp/file.py`` ``dump``: pandas
    ``to_csv(sep='\\t', quoting=csv.QUOTE_ALL)``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', encoding='utf-8', newline='') as f:
        writer = csv.writer(f, delimiter='\t', quoting=csv.QUOTE_ALL)
        writer.writerow(rows[0])
        writer.writerows([row[key] for key in rows[0]] for row in rows)
    return path


def with_images(rows, names):
    """``rows`` with VLMEvalKit's ``image`` cells: the first row of each
    chart holds it base64-encoded, later ones the ``index`` of that row."""
    first, out = {}, []
    for row, name in zip(rows, names):
        cell = first.get(name) or base64.b64encode(png(name)).decode()
        first.setdefault(name, row['index'])
        out.append({'index': row['index'], 'image': cell, **row})
    return out


class FakeChat:
    """A ChatModel's ``answer``: the reply to the question in each prompt."""

    def __init__(self, replies):
        self.replies = replies

    def answer(self, images, prompts, max_new_tokens=500):
        assert all(isinstance(im, Image.Image) for im in images)
        return [next(r for q, r in self.replies.items() if q in prompt)
                for prompt in prompts]


def pixels(image):
    if isinstance(image, dict):
        image = image['bytes']
    return Image.open(io.BytesIO(image) if isinstance(image, bytes)
                      else image).convert('RGB').tobytes()


def comparable(samples, split=True):
    return sorted((s.split if split else '', s.question, s.labels,
                   s.category, pixels(s.image)) for s in samples)


def scores(benchmark, data, replies, out, protocols=('all',)):
    results, _ = run(benchmark, FakeChat(replies), str(data), str(out),
                     modes=['short'], protocols=protocols, batch_size=2)
    return results


# ChartQA: (split, chart, question, answer); ChartQA's own answer
# "[2014, 2016]" (of test_human.json) is kept as written.
CHARTQA = [('human', 'a.png', 'How tall is A?', '12'),
           ('human', 'b.png', 'Which is larger?', 'Blue'),
           ('human', 'a.png', 'Which years rose?', '[2014, 2016]'),
           ('augmented', 'b.png', 'What is the total?', '1,234'),
           ('augmented', 'a.png', 'What share is red?', '45%')]
CHARTQA_REPLIES = {'How tall is A?': '12.3', 'Which is larger?': 'blue',
                   'Which years rose?': '2014', 'What is the total?': '1300',
                   'What share is red?': '45'}


def chartqa_tsv(path, local=False):
    """ChartQA_TEST.tsv: index, image, question, answer, split
    (test_human / test_augmented); ``local``: VLMEvalKit's
    ``*_local.tsv``, ``image_path`` instead of ``image``."""
    rows = [{'index': str(i + 1), 'question': q, 'answer': a,
             'split': f'test_{s}'} for i, (s, _, q, a) in enumerate(CHARTQA)]
    names = [name for _, name, _, _ in CHARTQA]
    if local:
        rows = [{'index': r['index'], 'image_path': name, **r}
                for r, name in zip(rows, names)]
    else:
        rows = with_images(rows, names)
    return write_tsv(path, rows)


def chartqa_github(root):
    test = root / 'ChartQA Dataset' / 'test'
    write_pngs(test / 'png')
    for split in ('human', 'augmented'):
        (test / f'test_{split}.json').write_text(json.dumps([
            {'imgname': i, 'query': q, 'label': a}
            for s, i, q, a in CHARTQA if s == split]))
    return test


def chartqa_ahmed_masry(root):
    """ahmed-masry/ChartQA's snapshot (its dataset card: imgname, query,
    label, type strings, image binary; data/{train,val,test}-*): the train
    shard's question must not be read."""
    (root / 'data').mkdir(parents=True)
    schema = pa.schema([('imgname', pa.string()), ('query', pa.string()),
                        ('label', pa.string()), ('type', pa.string()),
                        ('image', pa.binary())])
    for split, rows in (('train', [('human', 'a.png', 'Train?', '1')]),
                        ('test', CHARTQA)):
        pq.write_table(pa.Table.from_pylist([
            {'imgname': i, 'query': q, 'label': a, 'type': s,
             'image': png(i)} for s, i, q, a in rows], schema=schema),
            root / 'data' / f'{split}-00000-of-00001.parquet')
    return root


def test_chartqa_tsv_and_ahmed_masry_as_the_github_files(tmp_path):
    chartqa = get_benchmark('chartqa')
    data = {'github': chartqa_github(tmp_path / 'gh'),
            'tsv': chartqa_tsv(tmp_path / 'LMUData' / 'ChartQA_TEST.tsv'),
            'ahmed-masry': chartqa_ahmed_masry(tmp_path / 'am')}
    samples = {name: load_samples(chartqa, str(path))
               for name, path in data.items()}
    assert comparable(samples['tsv']) == comparable(samples['github']) == (
        comparable(samples['ahmed-masry']))
    assert {s.labels for s in samples['tsv']} >= {('[2014, 2016]',)}
    assert [s.uid for s in samples['tsv']] == ['1', '2', '3', '4', '5']
    assert chartqa.format_of(pq.read_table(
        data['ahmed-masry'] / 'data' / 'test-00000-of-00001.parquet'
    ).to_pylist(), 'f').name == 'ahmed-masry/ChartQA parquet'
    results = {name: scores(chartqa, path, CHARTQA_REPLIES, tmp_path / name)
               for name, path in data.items()}
    assert results['tsv'] == results['github'] == results['ahmed-masry']
    # 12.3 for 12, blue for Blue; 2014 is not "[2014, 2016]"
    assert results['tsv']['scores']['ours']['short']['Human']['0.05'] == (
        pytest.approx(200 / 3))
    assert results['tsv']['samples'] == {'human': 3, 'augmented': 2}
    # VLMEvalKit's *_local.tsv: image_path under --image-folder
    local = chartqa_tsv(tmp_path / 'ChartQA_TEST_local.tsv', local=True)
    write_pngs(tmp_path / 'images' / 'ChartQA_TEST')
    assert comparable(load_samples(chartqa, str(local), str(
        tmp_path / 'images' / 'ChartQA_TEST'))) == comparable(samples['tsv'])


# ChartBench: test.jsonl's records (github.com/IDEA-FinAI/ChartBench) and
# ChartBench.tsv's rows of the same questions.
CHARTBENCH = [
    {'id': 0, 'image': './data/test/line/line_single/chart_0/image.png',
     'type': {'chart': 'line', 'image': 'line_single', 'task': 'CR',
              'QA': 'Acc+'},
     'conversation': [{'label': 'Yes', 'query': 'This is a line chart.'},
                      {'label': 'No', 'query': 'This is a pie chart.'}]},
    {'id': 1, 'image': './data/test/radar/radar_single_wi_anno/chart_1/'
     'image.png', 'type': {'chart': 'radar', 'image': 'radar_single_wi_anno',
                           'task': 'VE', 'QA': 'Acc+'},
     'conversation': [{'label': 'Yes', 'query': 'A is 70.'},
                      {'label': 'No', 'query': 'A is 62.'}]},
    {'id': 2, 'image': './data/test/radar/radar_single_wi_anno/chart_1/'
     'image.png', 'type': {'chart': 'radar', 'image': 'radar_single_wi_anno',
                           'task': 'NQA', 'QA': 'GPT-acc'},
     'conversation': [{'label': ['0.5', '50%'],
                       'query': 'What share is C?'}]},
]
CHARTBENCH_CHART = {0: 'a.png', 1: 'b.png', 2: 'b.png'}
CHARTBENCH_REPLIES = {'This is a line chart.': 'Yes', 'This is a pie chart.':
                      'No', 'A is 70.': 'yes', 'A is 62.': 'yes',
                      'What share is C?': '50%'}


def chartbench_jsonl(root):
    (root / 'test.jsonl').parent.mkdir(parents=True)
    (root / 'test.jsonl').write_text(
        ''.join(json.dumps(r) + '\n' for r in CHARTBENCH))
    for record in CHARTBENCH:
        path = root / record['image']
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(CHARTBENCH_CHART[record['id']]))
    return root / 'test.jsonl'


def chartbench_tsv(path):
    """ChartBench.tsv: index (<id>_<k> for a pair's judgements), image,
    question, answer (a list literal for several), QA_type, task,
    chart_type (the subtype)."""
    rows, names = [], []
    for record in CHARTBENCH:
        kind, turns = record['type'], record['conversation']
        for k, turn in enumerate(turns):
            label = turn['label']
            rows.append({'index': f"{record['id']}_{k}" if len(turns) > 1
                         else str(record['id']), 'question': turn['query'],
                         'answer': str(label), 'QA_type': kind['QA'],
                         'task': kind['task'], 'chart_type': kind['image']})
            names.append(CHARTBENCH_CHART[record['id']])
    return write_tsv(path, with_images(rows, names))


def test_chartbench_tsv_as_its_jsonl(tmp_path):
    chartbench = get_benchmark('chartbench')
    jsonl = chartbench_jsonl(tmp_path / 'ChartBench')
    tsv = chartbench_tsv(tmp_path / 'LMUData' / 'ChartBench.tsv')
    samples = [load_samples(chartbench, str(p)) for p in (jsonl, tsv)]
    assert comparable(samples[0], split=False) == comparable(
        samples[1], split=False)
    assert [s.meta for s in samples[0]] == [s.meta for s in samples[1]]
    assert samples[1][-1].labels == ('0.5', '50%')  # the list literal
    ours, theirs = (scores(chartbench, p, CHARTBENCH_REPLIES, tmp_path / n)
                    for p, n in ((jsonl, 'jsonl'), (tsv, 'tsv')))
    assert ours['scores'] == theirs['scores']
    table = theirs['scores']['ours']['short']
    assert table['all'] == {'Acc+': 50.0, 'Acc': 75.0, 'CoR': 50.0,
                            'NQA': 100.0}
    assert set(table) >= {'line', 'radar', 'annotated', 'unannotated'}


PLOTQA = [{'image_index': 0, 'question_string': 'What is the peak?',
           'answer': 12.0, 'answer_bbox': {}, 'template': 'data_retrieval',
           'type': 'dot_line', 'question_id': 0},
          {'image_index': 1, 'question_string': 'Is A above B?',
           'answer': 'Yes', 'answer_bbox': {}, 'template': 'structural',
           'type': 'vbar_categorical', 'question_id': 1},
          {'image_index': 0, 'question_string': 'How many lines?',
           'answer': 3, 'answer_bbox': {}, 'template': 'structural',
           'type': 'dot_line', 'question_id': 2}]
PLOTQA_REPLIES = {'What is the peak?': '12.5', 'Is A above B?': 'no',
                  'How many lines?': '3'}


def test_plotqa_tsv_as_its_qa_pairs(tmp_path):
    plotqa = get_benchmark('plotqa')
    test = tmp_path / 'PlotQA' / 'test'
    (test / 'png').mkdir(parents=True)
    for i, name in enumerate(COLOURS):
        (test / 'png' / f'{i}.png').write_bytes(png(name))
    (test / 'qa_pairs_V1.json').write_text(json.dumps({'qa_pairs': PLOTQA}))
    tsv = write_tsv(tmp_path / 'PlotQA.tsv', with_images(
        [{'index': str(r['question_id']), 'question': r['question_string'],
          'answer': str(r['answer'])} for r in PLOTQA],
        [list(COLOURS)[r['image_index']] for r in PLOTQA]))
    native, vlmeval = (load_samples(plotqa, str(p)) for p in (test, tsv))
    assert [(s.question, s.labels, pixels(s.image)) for s in native] == [
        (s.question, s.labels, pixels(s.image)) for s in vlmeval]
    ours, theirs = (scores(plotqa, p, PLOTQA_REPLIES, tmp_path / n)['scores']
                    for p, n in ((test, 'json'), (tsv, 'tsv')))
    assert ours['ours']['short']['V1'] == theirs['ours']['short'][
        'PlotQA'] == {'accuracy': pytest.approx(200 / 3), 'n': 3}


def test_a_tsv_of_another_benchmark_stops_with_one_line(tmp_path, capsys):
    tsv = chartbench_tsv(tmp_path / 'ChartBench.tsv')
    assert chartmoe(['eval', 'chartqa', '--release', str(tmp_path / 'none'),
                     '--modes', 'short', '--data', str(tsv)]) == 1
    err = capsys.readouterr().err.strip()
    assert '\n' not in err and err.startswith(
        f"error: {tsv}: not a ChartQA file: fields found ['QA_type', "
        "'answer', 'chart_type', 'image', 'index', 'question', 'task'], "
        'expected ahmed-masry/ChartQA parquet: ')
    assert err.endswith("VLMEvalKit ChartQA_TEST.tsv: ['answer', 'index', "
                        "'question', 'split']")
    short = tmp_path / 'ChartQA_TEST.tsv'
    short.write_text('"index"\t"question"\t"answer"\t"split"\n'
                     '"1"\t"q"\t"1"\n')
    assert chartmoe(['eval', 'chartqa', '--release', str(tmp_path / 'none'),
                     '--data', str(short)]) == 1
    assert capsys.readouterr().err.strip() == (
        f'error: {short}: not a readable .tsv file (record 0 has not the '
        "header's 4 cells)")


def test_undecodable_images_are_named_and_counted_wrong(tmp_path, capsys):
    tsv = chartqa_tsv(tmp_path / 'ChartQA_TEST.tsv')
    rows = read_tsv(str(tsv))
    rows[1]['image'] = 'this is not base64, nor an image: ' * 3
    rows[3]['image'] = '99'  # the index of no row
    write_tsv(tsv, rows)
    results = scores(get_benchmark('chartqa'), tsv, CHARTQA_REPLIES,
                     tmp_path / 'out', protocols=['ours'])
    assert results['unreadable_images'] == 2
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith('warning:')]
    assert len(warnings) == 2 and 'ChartQA_TEST.tsv[index 2]' in warnings[0]
    assert 'ChartQA_TEST.tsv[index 4]' in warnings[1]
    rows = [json.loads(line) for line in (
        tmp_path / 'out' / 'answers_human_short.jsonl').read_text(
            ).splitlines()]
    assert rows[1]['answer'] is None and not any(rows[1]['correct'].values())
    assert 'image unreadable: ChartQA_TEST.tsv[index 2]' in rows[1]['error']
    table = results['scores']['ours']['short']
    assert table['Human']['0.05'] == pytest.approx(100 / 3)  # 12.3 only
    assert table['Augmented']['0.05'] == 50.0  # 45 for 45%
