"""Every user path on an InternLM-XComposer2 / ChartMoE folder, as a user
runs it: `chartmoe chat`, `eval-chartqa` (both protocols), `analyze-routing`
(35 x 35 expert maps), lmms-eval's CLI and the demo's turn, on a narrow
ChartMoE stand-in loaded by its hub id from an offline cache."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import run_tool

REPO_ID = 'IDEA-FinAI/chartmoe'
NARROW = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, plora_r=8, plora_alpha=16,
              vision_config=dict(
                  hidden_size=32, intermediate_size=64,
                  num_attention_heads=2))


@pytest.fixture(scope='module')
def standin(tmp_path_factory):
    """The ChartMoE stand-in in a hub cache, a ChartQA split of two charts
    beside it and the environment that finds it by id."""
    from PIL import Image, ImageDraw

    from xtuner_chartmoe.families.ixc2.standin import build_ixc2_standins
    root = tmp_path_factory.mktemp('ixc2_user')
    paths = build_ixc2_standins(root, llm_layers=1, vision_layers=1,
                                repos=(REPO_ID,), dtype=torch.float32,
                                **NARROW)
    data = root / 'data'
    (data / 'test').mkdir(parents=True)
    for i, colour in enumerate(('steelblue', 'darkorange')):
        image = Image.new('RGB', (300, 200), 'white')
        ImageDraw.Draw(image).rectangle((30, 40 + 30 * i, 120, 190),
                                        fill=colour)
        image.save(data / f'chart{i}.png')
    split = [{'imgname': f'chart{i}.png', 'query': f'How tall is bar {i}?',
              'label': str(10 + i)} for i in range(2)]
    for name in ('human', 'augmented'):
        (data / 'test' / f'test_{name}.json').write_text(json.dumps(split))
    env = dict(os.environ, HF_HUB_CACHE=paths['hf_cache'], HF_HUB_OFFLINE='1',
               HF_DATASETS_OFFLINE='1')
    return dict(root=root, data=data, env=env, folder=paths[REPO_ID])


def chartmoe(standin, *args):
    result = subprocess.run([sys.executable, '-m',
                             'xtuner_chartmoe.commands.cli', *args],
                            cwd=standin['root'], env=standin['env'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_chat_by_hub_id(standin):
    out = chartmoe(standin, 'chat', REPO_ID, '--image',
                   str(standin['data'] / 'chart0.png'), '--question',
                   'How tall is the bar?', '--max-new-tokens', '4')
    assert 'answer:' in out
    counts = dict(part.split('=') for part in out.split(
        'top-1 expert per visual token: ')[1].strip().split(', '))
    assert list(counts) == ['general', 'table', 'json', 'code']
    assert sum(map(int, counts.values())) == 1225  # 35 x 35 tokens


def test_eval_chartqa_both_protocols_on_a_folder(standin):
    out_dir = standin['root'] / 'eval'
    chartmoe(standin, 'eval-chartqa', '--release', standin['folder'],
             '--data-root', str(standin['data'] / 'test'), '--image-folder',
             str(standin['data']), '--modes', 'short', '--protocol', 'both',
             '--max-new-tokens', '4', '--out', str(out_dir))
    results = json.loads((out_dir / 'results.json').read_text())
    assert set(results) == {'ours', 'chartmoe (pot_idx 0)'}
    for tables in results.values():
        assert set(tables['short']) == {'Human', 'Augmented', 'Averaged'}
    # one generation served both protocols (the same short prompt)
    assert sorted(p.name for p in (out_dir / 'predictions').iterdir()) == [
        'augmented_short.jsonl', 'human_short.jsonl']


def test_force_expert_and_routing_maps_at_35_by_35(standin):
    out_dir = standin['root'] / 'routing'
    chartmoe(standin, 'analyze-routing', '--release', REPO_ID, '--data',
             str(standin['data'] / 'test' / 'test_human.json'),
             '--image-folder', str(standin['data']), '--out', str(out_dir))
    stats = json.loads((out_dir / 'routing_stats.json').read_text())
    assert stats['tokens'] == 2 * 1225
    assert all(sum(c) == 1225 for c in stats['per_image_top1_counts'].values())
    assert (out_dir / 'expert_map_chart0.png').is_file()
    from xtuner_chartmoe.families import load_chat_model
    chat = load_chat_model(standin['folder'])
    chat.force_expert(2)
    _, routing = chat.encode_images([str(standin['data'] / 'chart1.png')])
    assert chat.top1_counts(routing) == {'general': 0, 'table': 0,
                                         'json': 1225, 'code': 0}


def test_lmms_eval_cli_with_the_folder(standin):
    from xtuner_chartmoe.apps.lmms import TASKS_DIR
    out = standin['root'] / 'lmms'
    env = {k: v for k, v in standin['env'].items() if k not in (
        'RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    result = subprocess.run(
        [sys.executable, '-m', 'lmms_eval', '--model', 'chartmoe',
         '--model_args', f'pretrained={REPO_ID},max_new_tokens=4',
         '--batch_size', '2', '--tasks', 'chartqa_local_human',
         '--include_path', TASKS_DIR, '--log_samples', '--output_path',
         str(out)], cwd=standin['data'], env=env, capture_output=True,
        text=True)
    samples = list(out.glob('*/*_samples_chartqa_local_human.jsonl'))
    assert samples, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in samples[0].read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert sum(row['routing']['top1_counts'].values()) == 1225


def test_demo_turn_with_the_folder(standin):
    from xtuner_chartmoe.apps.demo import ask
    from xtuner_chartmoe.families import load_chat_model
    chat = load_chat_model(standin['folder'], dtype='bfloat16')
    assert chat.family == 'ixc2'
    answer, program, report, expert_map = ask(
        chat, str(standin['data'] / 'chart0.png'), 'How tall?', False,
        max_new_tokens=4)
    assert isinstance(answer, str) and program == ''
    assert expert_map is not None and os.path.isfile(expert_map)


def test_a_folder_of_another_kind_is_named(tmp_path):
    from xtuner_chartmoe.families import load_chat_model
    (tmp_path / 'config.json').write_text('{"model_type": "llama"}')
    with pytest.raises(FileNotFoundError, match='neither a ChartMoE release'):
        load_chat_model(str(tmp_path))
    out = run_tool(['-m', 'xtuner_chartmoe.commands.cli', 'chat',
                    str(tmp_path), '--image', 'x.png', '--question', 'q'],
                   cwd=tmp_path, check=False)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(
        f'error: {tmp_path}: neither a ChartMoE release')


def test_lmms_eval_own_chartqa_task_with_the_folder(standin, tmp_path):
    """lmms-eval's own `chartqa` task (its prompt and metric), its data as
    the hub's parquet schema read from a local folder."""
    import os.path as osp

    import datasets
    import lmms_eval
    parquet = tmp_path / 'ChartQA' / 'data'
    parquet.mkdir(parents=True)
    rows = {'type': ['human_test', 'augmented_test'],
            'question': ['How tall is bar 0?', 'How tall is bar 1?'],
            'answer': ['10', '11'],
            'image': [str(standin['data'] / f'chart{i}.png') for i in (0, 1)]}
    datasets.Dataset.from_dict(rows).cast_column(
        'image', datasets.Image()).to_parquet(
            str(parquet / 'test-00000-of-00001.parquet'))
    tasks = tmp_path / 'tasks'
    tasks.mkdir()
    own = osp.join(osp.dirname(lmms_eval.__file__), 'tasks', 'chartqa',
                   'chartqa.yaml')
    (tasks / 'chartqa_offline.yaml').write_text(
        f'include: {own}\ntask: chartqa_offline\n'
        f'dataset_path: {tmp_path / "ChartQA"}\n')
    out = tmp_path / 'lmms'
    result = subprocess.run(
        [sys.executable, '-m', 'lmms_eval', '--model', 'chartmoe',
         '--model_args', f'pretrained={REPO_ID}', '--batch_size', '2',
         '--tasks', 'chartqa_offline', '--include_path', str(tasks),
         '--log_samples', '--output_path', str(out)], cwd=tmp_path,
        env=standin['env'], capture_output=True, text=True)
    samples = list(out.glob('*/*_samples_chartqa_offline.jsonl'))
    assert samples, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in samples[0].read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:  # scored by lmms-eval's own ChartQA metric
        assert row['relaxed_overall'] in (0.0, 1.0)
        assert isinstance(row['filtered_resps'], (str, list))
