"""Chart synthesis (quadruples, QA, PoT), map-fns and record validation."""
import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from xtuner_chartmoe.dataset import (ChartLLaVADataset, chartgemma_map_fn,
                                     chartmoe_map_fn, chartqa_map_fn,
                                     chartqa_pot_map_fn, record_problem)
from xtuner_chartmoe.dataset.chart_types import (CHART_TYPES,
                                                  register_chart_type)
from xtuner_chartmoe.dataset.charts import ChartType, render_code
from xtuner_chartmoe.dataset.quadruples import make_quadruple
from xtuner_chartmoe.dataset.synthesize import synthesize
from xtuner_chartmoe.dataset.tables import load_tables


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp('synth')
    stats = synthesize(str(out), 24, seed=3, num_workers=2, progress=False)
    return out, stats


def literals_of(code):
    """The ``categories`` / ``series`` / ``colors`` literals of plot code."""
    values = {}
    for node in ast.parse(code).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0],
                                                       ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def test_all_chart_types_are_covered():
    types = {make_quadruple(0, i)['chart_type'] for i in range(200)}
    assert types == set(CHART_TYPES) and len(types) >= 8


@pytest.fixture
def step_chart():
    """A step chart registered for one test (taken out afterwards)."""
    chart_type = register_chart_type(ChartType('step', multi_series=True,
                                               body='''\
for i, (name, values) in enumerate(series):
    ax.step(categories, values, color=colors[i], where='mid', label=name)
'''))
    yield chart_type
    del CHART_TYPES[chart_type.name]


def test_a_registered_chart_type_is_synthesized(step_chart, tmp_path):
    with pytest.raises(ValueError, match="'step' is already registered"):
        register_chart_type(step_chart)
    synthesize(str(tmp_path), 12, seed=5, num_workers=1, test_fraction=0,
               progress=False)
    quads = [json.loads(f.read_text())
             for f in sorted((tmp_path / 'quads').iterdir())]
    steps = [quad for quad in quads if quad['chart_type'] == 'step']
    assert steps
    quad = steps[0]
    image = f"charts/{quad['index']:06d}.png"
    # table: several series (a multi-series type), and its text form
    assert len(quad['table']['header']) in (3, 4)
    assert quad['table_text'].split('\n')[0] == ' | '.join(
        quad['table']['header'])
    # JSON and code: this type's, carrying the table's values
    assert quad['json']['chart_type'] == 'step'
    assert quad['json']['legend']['show']
    assert step_chart.body in quad['code'] and 'ax.set_xlabel' in quad['code']
    code = literals_of(quad['code'])
    assert code['categories'] == [row[0] for row in quad['table']['rows']]
    # image: rendered, not blank
    pixels = np.asarray(Image.open(tmp_path / image).convert('L'))
    assert pixels.min() < 128 < pixels.max()
    # records: align (table, JSON, code), QA with PoT, knowledge
    for kind in ('table', 'json', 'code'):
        records = json.loads((tmp_path / f'align_{kind}.json').read_text())
        record, = [r for r in records if r['image'] == [image]]
        assert record['conversations'][1]['value']
    qa = json.loads((tmp_path / 'sft_chartqa.json').read_text())
    assert len([q for q in qa if q['imgname'] == image]) == 3
    knowledge = json.loads((tmp_path / 'knowledge_mmc.json').read_text())
    assert {'image_id': image, 'question': 'What type of chart is shown?',
            'answer': 'It is a step chart.'} in knowledge


def test_code_rerun_reproduces_the_image(synth, tmp_path):
    out, _ = synth
    for index in range(0, 24, 5):
        quad = json.loads((out / 'quads' / f'{index:06d}.json').read_text())
        render_code(quad['code'], str(tmp_path / 'again.png'))
        first = np.asarray(Image.open(out / 'charts' / f'{index:06d}.png'))
        again = np.asarray(Image.open(tmp_path / 'again.png'))
        assert first.shape == again.shape and np.array_equal(first, again)


def test_table_json_and_code_agree(synth):
    out, _ = synth
    for index in range(24):
        quad = json.loads((out / 'quads' / f'{index:06d}.json').read_text())
        table, spec = quad['table'], quad['json']
        categories = [row[0] for row in table['rows']]
        columns = {name: [row[i + 1] for row in table['rows']]
                   for i, name in enumerate(table['header'][1:])}
        # the text table parses back to the table
        lines = [line.split(' | ') for line in quad['table_text'].split('\n')]
        assert lines[0] == table['header']
        assert [line[0] for line in lines[1:]] == [str(c) for c in categories]
        assert [[float(v) for v in line[1:]] for line in lines[1:]] == [
            [float(v) for v in row[1:]] for row in table['rows']]
        # JSON and code carry the same values
        assert spec['x_axis']['categories'] == categories
        assert {s['name']: s['values'] for s in spec['series']} == columns
        code = literals_of(quad['code'])
        assert code['categories'] == categories
        assert {name: list(values) for name, values in code['series']} == \
            columns
        assert code['colors'] == spec['colors']
        assert spec['chart_type'] == quad['chart_type']


def test_pot_programs_print_the_short_answer(synth):
    out, _ = synth
    programs, answers = [], []
    for index in range(24):
        quad = json.loads((out / 'quads' / f'{index:06d}.json').read_text())
        for qa in quad['questions']:
            programs.append(qa['pot'])
            answers.append(qa['answer'])
    assert qa_numeric(out) > 0
    # run each program in a fresh interpreter (they are our own programs)
    runner = ('import sys, json, io, contextlib\n'
              'outs = []\n'
              'for p in json.load(sys.stdin):\n'
              '    buf = io.StringIO()\n'
              '    with contextlib.redirect_stdout(buf):\n'
              '        exec(p, {})\n'
              '    outs.append(buf.getvalue().strip())\n'
              'print(json.dumps(outs))\n')
    result = subprocess.run([sys.executable, '-c', runner],
                            input=json.dumps(programs), capture_output=True,
                            text=True, check=True)
    assert json.loads(result.stdout) == answers


def qa_numeric(out):
    return sum(qa['numeric'] for f in (out / 'quads').iterdir()
               for qa in json.loads(f.read_text())['questions'])


def test_records_and_splits(synth):
    out, stats = synth
    files = stats['files']
    align = json.loads(open(files['table']).read())
    assert len(align) == 18  # 24 charts, last 25 % are the test split
    record = align[0]
    assert record['conversations'][0] == {
        'from': 'user', 'value': '<ImageHere>Convert the chart into a data '
        'table.'}
    assert os.path.isfile(out / record['image'][0])
    human = json.loads(open(files['test_human']).read())
    augmented = json.loads(open(files['test_augmented']).read())
    assert len(human) + len(augmented) == 6 * 3
    assert set(human[0]) == {'imgname', 'query', 'label'}
    qa = json.loads(open(files['chartqa']).read())
    assert len(qa) == 18 * 3
    assert set(qa[0]) == {'imgname', 'query', 'label', 'pot'}


def test_deterministic_across_worker_counts(synth, tmp_path):
    out, _ = synth
    synthesize(str(tmp_path), 24, seed=3, num_workers=1, progress=False)
    for name in ('align_code.json', 'sft_chartqa.json',
                 'test/test_human.json'):
        assert (tmp_path / name).read_text() == (out / name).read_text()
    assert (tmp_path / 'charts' / '000007.png').read_bytes() == \
        (out / 'charts' / '000007.png').read_bytes()


def test_resume_renders_only_missing_charts(tmp_path):
    synthesize(str(tmp_path), 6, seed=1, num_workers=1, progress=False)
    kept = tmp_path / 'quads' / '000001.json'
    mtime = kept.stat().st_mtime_ns
    (tmp_path / 'quads' / '000004.json').unlink()
    stats = synthesize(str(tmp_path), 6, seed=1, num_workers=1,
                       progress=False)
    assert (stats['rendered'], stats['skipped']) == (1, 5)
    assert kept.stat().st_mtime_ns == mtime
    assert not list(tmp_path.rglob('*.tmp*'))


def test_user_tables(tmp_path):
    (tmp_path / 'sales.csv').write_text(
        'Quarter,North,South\nQ1,10,12.5\nQ2,14,9\nQ3,8,11\n')
    (tmp_path / 'single.json').write_text(json.dumps(
        {'header': ['Fruit', 'Kg'], 'rows': [['Apple', 3], ['Pear', 5],
                                             ['Fig', 1]]}))
    tables = load_tables(str(tmp_path / 'sales.csv')) + load_tables(
        str(tmp_path / 'single.json'))
    assert tables[0]['rows'][0] == ['Q1', 10, 12.5]
    stats = synthesize(str(tmp_path / 'out'), tables=tables, num_workers=1,
                       test_fraction=0, progress=False)
    quads = [json.loads((tmp_path / 'out' / 'quads' / f'00000{i}.json'
                         ).read_text()) for i in range(2)]
    assert quads[0]['chart_type'] in ('grouped_bar', 'stacked_bar', 'line',
                                      'area')
    assert quads[1]['table']['rows'] == [['Apple', 3], ['Pear', 5], ['Fig', 1]]
    assert stats['rendered'] == 2


def test_bad_user_table_names_file_row_and_column(tmp_path):
    (tmp_path / 'bad.csv').write_text('A,B\nx,1\ny,lots\n')
    with pytest.raises(ValueError, match=r'bad.csv:3:2: expected a number'):
        load_tables(str(tmp_path / 'bad.csv'))


def test_map_fns():
    ref = chartmoe_map_fn({'id': 1, 'image': ['a.png'], 'conversations': [
        {'from': 'user', 'value': '<ImageHere> Convert to a table.'},
        {'from': 'assistant', 'value': 'A | B'}]})
    assert ref == {'image': 'a.png', 'conversation': [
        {'input': '<image>\nConvert to a table.', 'output': 'A | B'}]}
    qa = chartqa_map_fn({'imgname': 'b.png', 'query': 'How many?',
                         'label': '12'})
    assert qa['conversation'][0]['input'] == (
        '<image>\nAnswer the question using a single word or phrase.'
        'How many?')
    assert qa['image'] == 'b.png' and qa['conversation'][0]['output'] == '12'
    pot = chartqa_pot_map_fn({'imgname': 'b.png', 'query': 'Sum?',
                              'pot': 'print(1 + 2)'})
    assert pot['conversation'][0]['input'].startswith(
        '<image>\nPlease give the program of thought in python code.')
    assert pot['conversation'][0]['output'] == 'print(1 + 2)'
    gemma = chartgemma_map_fn({'image': 'c.png', 'input': 'Describe',
                               'output': 'A bar chart.'})
    assert gemma['conversation'][0]['input'] == '<image>\nDescribe'


def test_record_problems(tmp_path):
    Image.new('RGB', (8, 8)).save(tmp_path / 'ok.png')
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG not really')
    good = {'image': 'ok.png', 'conversation': [
        {'input': '<image>\nQ', 'output': 'A'}]}
    assert record_problem(good, str(tmp_path)) is None
    cases = {
        'image file missing': dict(good, image='gone.png'),
        'image unreadable': dict(good, image='broken.png'),
        'empty answer': dict(good, conversation=[{'input': '<image>\nQ',
                                                  'output': ' '}]),
        'no conversation turns': dict(good, conversation=[]),
        'but no <image> token': dict(good, conversation=[
            {'input': 'Q', 'output': 'A'}]),
        'malformed': dict(good, conversation=[{'input': '<image>\nQ'}]),
    }
    for expected, record in cases.items():
        assert expected in record_problem(record, str(tmp_path))


def test_dataset_skips_or_stops_on_bad_records(workspace, tmp_path):
    from transformers import AutoTokenizer, CLIPImageProcessor
    tiny = workspace / 'work_dirs' / 'tiny'
    records = json.loads((tiny / 'data' / 'align_table.json').read_text())[:3]
    records.append(dict(records[0], image=['charts/missing.png']))
    records.append(dict(records[0], conversations=[
        {'from': 'user', 'value': '<ImageHere>Q'},
        {'from': 'assistant', 'value': ''}]))
    records.append(dict(records[0], conversations=[
        {'from': 'robot', 'value': 'x'}]))
    data = tmp_path / 'mixed.json'
    data.write_text(json.dumps(records))
    kwargs = dict(image_folder=str(tiny / 'data'), data_path=str(data),
                  image_processor=CLIPImageProcessor.from_pretrained(
                      tiny / 'clip'),
                  tokenizer=AutoTokenizer.from_pretrained(tiny / 'llm'),
                  dataset_map_fn=chartmoe_map_fn, map_num_proc=1)
    dataset = ChartLLaVADataset(**kwargs)
    assert len(dataset) == 3
    assert dataset[2]['pixel_values'].shape == (3, 112, 112)
    with pytest.raises(ValueError) as err:
        ChartLLaVADataset(on_bad_record='error', **kwargs)
    message = str(err.value)
    assert '3 bad record(s)' in message
    assert f'{data}[3]: image file missing' in message
    assert f'{data}[4]: turn 0 has an empty answer' in message
    assert f"{data}[5]: cannot be mapped (KeyError: 'robot')" in message
    (tmp_path / 'notjson.json').write_text('{oops')
    with pytest.raises(ValueError,
                       match='notjson.json: not a readable .json file'):
        ChartLLaVADataset(**dict(kwargs, data_path=str(
            tmp_path / 'notjson.json')))
