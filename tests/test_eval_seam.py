"""The benchmark seam with ChartQA on it: every download format (offline
replicas written here in each format's exact schema) gives the same
samples and scores; the runner's cache resumes an interrupted run;
unreadable images are named and counted wrong; bad input stops with one
line; ``chartmoe eval`` (and its alias ``eval-chartqa``) on a tiny
release."""
import io
import json
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from xtuner_chartmoe.commands.cli import main as chartmoe
from xtuner_chartmoe.evaluation.benchmarks import get_benchmark
from xtuner_chartmoe.evaluation.benchmarks.base import SchemaError
from xtuner_chartmoe.evaluation.benchmarks.runner import load_samples, run

# (split, imgname, query, label): two charts, questions of both kinds
QUESTIONS = [('human', 'a.png', 'How tall is A?', '12'),
             ('human', 'b.png', 'Which is larger?', 'Blue'),
             ('human', 'a.png', 'Is A over 10?', 'Yes'),
             ('augmented', 'b.png', 'What is the total?', '1,234'),
             ('augmented', 'a.png', 'What share is red?', '45%')]
# replies of a model that gets some right: short answers and PoT programs
SHORT = {'How tall is A?': '12.3', 'Which is larger?': 'blue',
         'Is A over 10?': '', 'What is the total?': '1300',
         'What share is red?': '45'}
POT = {'How tall is A?': 'print(6 * 2)', 'Which is larger?': 'print(1/0)',
       'Is A over 10?': 'print(12 > 10)', 'What is the total?':
       '```python\nprint(1234)\n```', 'What share is red?': 'print(red)'}
HUB_IMAGE = pa.struct([('bytes', pa.binary()), ('path', pa.string())])


class FakeChat:
    """A ChatModel's ``answer``: the reply for each question, asked in
    batches; counts its calls and can be stopped after some."""

    def __init__(self, stop_after=None):
        self.calls, self.sizes, self.stop_after = 0, [], stop_after

    def answer(self, images, questions, max_new_tokens=500):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        assert all(isinstance(im, Image.Image) for im in images)
        self.calls += 1
        self.sizes += [im.size for im in images]
        return [(POT if 'program of thought' in q else SHORT)[
            q.rsplit('.', 1)[1]] for q in questions]


def png(name):
    colour = {'a.png': (200, 30, 30), 'b.png': (30, 30, 200)}[name]
    buffer = io.BytesIO()
    Image.new('RGB', (24, 16), colour).save(buffer, 'PNG')
    return buffer.getvalue()


def write_github(root):
    """ChartQA's GitHub layout: ``ChartQA Dataset/{train,test}/`` with
    ``<split>_{human,augmented}.json``, ``png/`` and the per-chart
    ``annotations/`` (which the loader must not read)."""
    test = root / 'ChartQA Dataset' / 'test'
    for folder in ('png', 'annotations'):
        (test / folder).mkdir(parents=True)
    for name in ('a.png', 'b.png'):
        (test / 'png' / name).write_bytes(png(name))
    (test / 'annotations' / 'a.json').write_text('{"models": []}')
    for split in ('human', 'augmented'):
        (test / f'test_{split}.json').write_text(json.dumps([
            {'imgname': i, 'query': q, 'label': a}
            for s, i, q, a in QUESTIONS if s == split]))
    (root / 'ChartQA Dataset' / 'train').mkdir()
    (root / 'ChartQA Dataset' / 'train' / 'train_human.json').write_text(
        json.dumps([{'imgname': 'z.png', 'query': 'train?', 'label': '1'}]))
    return root / 'ChartQA Dataset'


def m4_table(questions):
    """HuggingFaceM4/ChartQA's schema: image (the ``datasets`` Image
    feature: struct of bytes and path), query, label (list of strings),
    human_or_machine (ClassLabel human/machine: int64)."""
    return pa.table({
        'image': pa.array([{'bytes': png(i), 'path': i}
                           for _, i, _, _ in questions], HUB_IMAGE),
        'query': pa.array([q for _, _, q, _ in questions], pa.string()),
        'label': pa.array([[a] for _, _, _, a in questions],
                          pa.list_(pa.string())),
        'human_or_machine': pa.array(
            [('human', 'augmented').index(s) for s, _, _, _ in questions],
            pa.int64())})


def lmms_table(questions):
    """lmms-lab/ChartQA's schema (lmms-eval's upload_chartqa.py): type,
    question, answer, image."""
    return pa.table({
        'type': pa.array([f'{s}_test' for s, _, _, _ in questions],
                         pa.string()),
        'question': pa.array([q for _, _, q, _ in questions], pa.string()),
        'answer': pa.array([a for _, _, _, a in questions], pa.string()),
        'image': pa.array([{'bytes': png(i), 'path': None}
                           for _, i, _, _ in questions], HUB_IMAGE)})


def write_hub(root, table, splits=('test',)):
    """A hub snapshot folder: ``data/<split>-00000-of-00001.parquet``
    (other splits get one question that must not be evaluated)."""
    (root / 'data').mkdir(parents=True)
    for split in splits:
        rows = QUESTIONS if split == 'test' else QUESTIONS[:1]
        pq.write_table(table(rows), root / 'data' /
                       f'{split}-00000-of-00001.parquet')
    (root / 'README.md').write_text('---\ndataset_info: ...\n---\n')
    return root


@pytest.fixture
def formats(tmp_path):
    return {'github': write_github(tmp_path / 'gh'),
            'HuggingFaceM4': write_hub(tmp_path / 'm4', m4_table,
                                       ('train', 'val', 'test')),
            'lmms-lab': write_hub(tmp_path / 'lmms', lmms_table)}


def test_replicas_have_the_schema_datasets_writes(tmp_path):
    """The hub files are written by ``datasets`` (``Image()`` feature,
    ``ClassLabel``); our pyarrow replicas have their Arrow schema."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature
    from datasets import List, Value
    rows = QUESTIONS[:2]
    m4 = Dataset.from_dict(
        {'image': [{'bytes': png(i), 'path': i} for _, i, _, _ in rows],
         'query': [q for _, _, q, _ in rows],
         'label': [[a] for _, _, _, a in rows],
         'human_or_machine': [0, 0]},
        features=Features({'image': ImageFeature(), 'query': Value('string'),
                           'label': List(Value('string')),
                           'human_or_machine': ClassLabel(
                               names=['human', 'machine'])}))
    lmms = Dataset.from_dict(
        {'type': ['human_test'] * 2, 'question': [q for _, _, q, _ in rows],
         'answer': [a for _, _, _, a in rows],
         'image': [{'bytes': png(i), 'path': None} for _, i, _, _ in rows]}
    ).cast_column('image', ImageFeature())
    for dataset, replica in ((m4, m4_table), (lmms, lmms_table)):
        dataset.to_parquet(str(tmp_path / 'hub.parquet'))
        written = pq.read_schema(tmp_path / 'hub.parquet').remove_metadata()
        assert written.equals(replica(rows).schema), (written,
                                                       replica(rows).schema)


def comparable(samples):
    return sorted((s.split, s.question, s.labels, Image.open(
        io.BytesIO(s.image['bytes']) if isinstance(s.image, dict)
        else s.image).convert('RGB').tobytes()) for s in samples)


def test_every_format_gives_the_same_samples_and_scores(formats, tmp_path):
    chartqa = get_benchmark('chartqa')
    loaded = {name: load_samples(chartqa, str(path))
              for name, path in formats.items()}
    assert {name: len(s) for name, s in loaded.items()} == dict.fromkeys(
        formats, len(QUESTIONS))  # no train/val question, no annotation
    assert comparable(loaded['github']) == comparable(
        loaded['HuggingFaceM4']) == comparable(loaded['lmms-lab'])
    results = {}
    for name, path in formats.items():
        results[name], text = run(chartqa, FakeChat(), str(path),
                                  str(tmp_path / name), protocols=['all'],
                                  batch_size=2, pot_workers=2)
    assert results['github'] == results['HuggingFaceM4'] == results[
        'lmms-lab']
    scores = results['github']['scores']
    # ours: 12.3 within 5 % of 12 (not 1300 of 1,234 but within 10 %),
    # blue = Blue, 45 = 45%; '' is wrong
    assert scores['ours']['short']['Human'] == {
        '0.05': pytest.approx(200 / 3), '0.1': pytest.approx(200 / 3),
        '0.2': pytest.approx(200 / 3)}
    assert scores['ours']['short']['Augmented'] == {
        '0.05': 50.0, '0.1': 100.0, '0.2': 100.0}
    # PoT: 12, an error, True -> Yes; 1234, an error
    assert scores['ours']['pot']['Human']['0.05'] == pytest.approx(200 / 3)
    assert scores['ours']['pot']['Augmented']['0.05'] == 50.0
    # ChartMoE's scorer counts the empty answer right (substring)
    assert scores['chartmoe']['short']['Human']['0.05'] == 100.0
    assert results['github']['samples'] == {'human': 3, 'augmented': 2}
    assert results['github']['unreadable_images'] == 0
    assert 'ChartQA relaxed accuracy (%) (pot, chartmoe-pot1 protocol)' in text
    # one generation where the prompts agree (ours, chartmoe-pot1 PoT)
    assert sorted(p.name for p in (tmp_path / 'github' / 'predictions')
                  .iterdir()) == [
        'augmented_pot.jsonl', 'augmented_pot_chartmoe.jsonl',
        'augmented_short.jsonl', 'human_pot.jsonl', 'human_pot_chartmoe.jsonl',
        'human_short.jsonl']


def test_an_interrupted_run_resumes_with_what_is_missing(formats, tmp_path):
    chartqa, out = get_benchmark('chartqa'), tmp_path / 'out'
    data = str(formats['lmms-lab'] / 'data' / 'test-00000-of-00001.parquet')
    with pytest.raises(KeyboardInterrupt):
        run(chartqa, FakeChat(stop_after=1), data, str(out), modes=['short'],
            batch_size=2)
    cache = out / 'predictions' / 'human_short.jsonl'
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [r['uid'] for r in rows] == ['test-00000-of-00001.parquet#0',
                                        'test-00000-of-00001.parquet#1']
    with open(cache, 'a') as f:  # killed while writing the next batch
        f.write('{"uid": "test-00000-of-00001.parquet#2", "pro')
    chat = FakeChat()
    results, _ = run(chartqa, chat, data, str(out), modes=['short'],
                     batch_size=2)
    assert chat.calls == 2 and len(chat.sizes) == 3  # human: 1, augmented: 2
    fresh, _ = run(chartqa, FakeChat(), data, str(tmp_path / 'fresh'),
                   modes=['short'], batch_size=2)
    assert results == fresh
    assert len(cache.read_text().splitlines()) == 3
    chat = FakeChat()
    run(chartqa, chat, data, str(out), modes=['short'])
    assert chat.calls == 0  # all cached


def test_unreadable_image_is_named_counted_wrong_and_the_run_goes_on(
        formats, tmp_path, capsys):
    png_dir = formats['github'] / 'test' / 'png'
    (png_dir / 'b.png').write_bytes(b'not a png')
    chat = FakeChat()
    results, text = run(get_benchmark('chartqa'), chat,
                        str(formats['github']), str(tmp_path / 'out'),
                        modes=['short'], protocols=['chartmoe'])
    assert results['unreadable_images'] == 1
    assert len(chat.sizes) == 3  # the questions on a.png
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith('warning:')]
    assert len(warnings) == 1 and str(png_dir / 'b.png') in warnings[0]
    rows = [json.loads(line) for line in (
        tmp_path / 'out' / 'answers_human_short_chartmoe.jsonl'
    ).read_text().splitlines()]
    bad = [r for r in rows if r['image'].endswith('b.png')]
    assert bad and all(r['answer'] is None and 'image unreadable' in r['error']
                       and not any(r['correct'].values()) for r in bad)
    # under ChartMoE's scorer the empty answer to 'Is A over 10?' is right
    assert results['scores']['chartmoe']['short']['Human']['0.05'] == (
        pytest.approx(200 / 3))
    assert '1 image(s) could not be read' in text


def one_line_error(capsys, *argv):
    assert chartmoe(list(argv)) == 1
    err = capsys.readouterr().err.strip()
    assert '\n' not in err and 'Traceback' not in err
    return err


def test_bad_input_stops_before_the_model_with_one_line(formats, tmp_path,
                                                        capsys):
    """Data are checked before the model loads (the release given here
    does not exist)."""
    other = tmp_path / 'chartfc.json'
    other.write_text(json.dumps([{'question': 'q', 'answer': 'yes',
                                  'image_filename': 'x.png'}]))

    def run_on(data, *more):
        return one_line_error(
            capsys, 'eval', 'chartqa', '--release', str(tmp_path / 'nowhere'),
            '--modes', 'short', '--data', str(data), *more)

    err = run_on(other)
    assert err == (
        f"error: {other}: not a ChartQA file: fields found ['answer', "
        "'image_filename', 'question'], expected ahmed-masry/ChartQA "
        "parquet: ['image', 'imgname', 'label', 'query', 'type']; ChartQA "
        "GitHub JSON: ['imgname', 'label', 'query']; HuggingFaceM4/ChartQA "
        "parquet: ['human_or_machine', 'image', 'label', 'query']; "
        "lmms-lab/ChartQA parquet: ['answer', 'image', 'question', 'type']; "
        "VLMEvalKit ChartQA_TEST.tsv: ['answer', 'index', 'question', "
        "'split']")
    broken = tmp_path / 'test_human.json'
    broken.write_text(json.dumps([{'imgname': 'a.png', 'query': 'q',
                                   'label': '1'}, {'imgname': 'a.png'}]))
    assert run_on(broken) == (
        f"error: {broken}[1]: fields found ['imgname'], expected ChartQA "
        "GitHub JSON: ['imgname', 'label', 'query']")
    assert run_on(tmp_path / 'missing.json') == (
        f'error: data file not found: {tmp_path / "missing.json"}')
    assert run_on(formats['github'], '--image-folder',
                  str(tmp_path)).startswith(
        'error: none of the 5 image files exists (first: ')
    assert run_on(formats['github'], '--protocol', 'theirs') == (
        "error: chartqa: no protocol 'theirs'; it has ours, chartmoe, "
        'chartmoe-pot1')
    assert one_line_error(capsys, 'eval', 'chartqaa', '--release', 'r',
                          '--data', 'd').startswith(
        "error: no benchmark 'chartqaa'; there are: ")
    with pytest.raises(SchemaError, match="human_or_machine is 2, expected"):
        bad = m4_table(QUESTIONS[:1]).set_column(
            3, 'human_or_machine', pa.array([2], pa.int64()))
        pq.write_table(bad, tmp_path / 'test-00000-of-00001.parquet')
        get_benchmark('chartqa').load(str(tmp_path /
                                          'test-00000-of-00001.parquet'))


def test_list_names_each_benchmark_with_formats_modes_protocols(capsys):
    assert chartmoe(['eval', '--list']) == 0
    out = capsys.readouterr().out
    chartqa = out.split('chartqa: ')[1].split('\n\n')[0]
    assert chartqa.startswith('ChartQA, relaxed accuracy (%)')
    for expected in ('modes: short, pot', 'ours (default):', 'chartmoe:',
                     'chartmoe-pot1:', 'ChartQA GitHub JSON:',
                     'HuggingFaceM4/ChartQA parquet:',
                     'lmms-lab/ChartQA parquet:'):
        assert expected in chartqa


@pytest.fixture(scope='module')
def tiny_release(workspace, tmp_path_factory):
    """A release folder (``chartmoe merge``'s layout) of the untrained tiny
    default: its LLM and CLIP, the general projector upcycled into the MoE
    connector."""
    from xtuner.utils import PROMPT_TEMPLATE

    from xtuner_chartmoe.model.connector_builder import build_moe_projector
    tiny, release = (workspace / 'work_dirs' / 'tiny',
                     tmp_path_factory.mktemp('tiny_release'))
    shutil.copytree(tiny / 'llm', release / 'llm')
    shutil.copytree(tiny / 'clip', release / 'visual_encoder')
    build_moe_projector('upcycle', [tiny / 'general_projector']
                        ).save_pretrained(release / 'projector')
    (release / 'chartmoe.json').write_text(json.dumps(
        {'prompt_template': PROMPT_TEMPLATE.internlm2_chat,
         'visual_select_layer': -2}))
    return release


def test_eval_and_its_alias_on_a_tiny_release(workspace, tiny_release,
                                              tmp_path):
    """``chartmoe eval chartqa`` on the tiny test split as lmms-lab's
    parquet (images inside) == ``chartmoe eval-chartqa`` on it as ChartQA
    JSON + PNG folder: the same replies and results."""
    data = workspace / 'work_dirs' / 'tiny' / 'data'
    rows = [(split, e['imgname'], e['query'], e['label'])
            for split in ('human', 'augmented') for e in json.loads(
                (data / 'test' / f'test_{split}.json').read_text())]
    table = pa.Table.from_pylist([
        {'type': f'{s}_test', 'question': q, 'answer': a,
         'image': {'bytes': (data / i).read_bytes(), 'path': None}}
        for s, i, q, a in rows], schema=lmms_table([]).schema)
    (tmp_path / 'lmms' / 'data').mkdir(parents=True)
    pq.write_table(table, tmp_path / 'lmms' / 'data' /
                   'test-00000-of-00001.parquet')
    common = ['--release', str(tiny_release), '--modes', 'short',
              '--max-new-tokens', '4', '--protocol']
    result = subprocess.run(  # the command as users run it
        [sys.executable, '-m', 'xtuner_chartmoe.commands.cli', 'eval',
         'chartqa', '--data', str(tmp_path / 'lmms'), '--out',
         str(tmp_path / 'eval'), *common, 'all'], capture_output=True,
        text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'ChartQA relaxed accuracy (%) (short, ours protocol)' in (
        result.stdout)
    assert chartmoe(['eval-chartqa', '--data-root', str(data / 'test'),
                     '--image-folder', str(data), '--out',
                     str(tmp_path / 'alias'), *common, 'both']) == 0
    new, alias = (json.loads((tmp_path / out / 'results.json').read_text())
                  for out in ('eval', 'alias'))
    counts = {split: sum(r[0] == split for r in rows)
              for split in ('human', 'augmented')}
    assert new['samples'] == counts and min(counts.values()) > 0
    # the alias keeps its own layout and names: 'both' is ours + chartmoe
    assert alias == {'ours': new['scores']['ours'],
                     'chartmoe (pot_idx 0)': new['scores']['chartmoe']}
    for name in ('answers_human_short.jsonl', 'answers_augmented_short.jsonl'):
        replies = [[json.loads(line)['reply'] for line in (
            tmp_path / out / name).read_text().splitlines()]
            for out in ('eval', 'alias')]
        assert replies[0] == replies[1] and len(replies[0]) > 0
