"""The package as users install it: a wheel with the configs, the tools and
the lmms-eval task inside, loose requirements, and `chartmoe <command>`
working from any directory with non-zero exits on failure."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp('dist')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                    '--no-build-isolation', '-q', '-w', str(dist), REPO],
                   check=True, capture_output=True)
    return next(dist.glob('xtuner_chartmoe-*.whl'))


@pytest.fixture(scope='module')
def installed(wheel, tmp_path_factory):
    """The wheel installed without dependencies into a fresh target, used
    with this environment's packages; commands run outside the checkout."""
    target = tmp_path_factory.mktemp('target')
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q',
                    '--target', str(target), str(wheel)], check=True,
                   capture_output=True)
    run_dir = tmp_path_factory.mktemp('elsewhere')
    env = dict(os.environ, PYTHONPATH=str(target))

    def chartmoe(*args, check=True):
        result = subprocess.run([str(target / 'bin' / 'chartmoe'), *args],
                                cwd=run_dir, env=env, capture_output=True,
                                text=True)
        if check and result.returncode != 0:
            raise AssertionError(f'chartmoe {args} failed:\n'
                                 f'{result.stdout[-3000:]}{result.stderr[-3000:]}')
        return result

    return target, run_dir, env, chartmoe


def test_wheel_contents_and_requirements(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith('METADATA'))
                           ).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(
            'entry_points.txt'))).decode()
    configs = [n for n in names if n.startswith('xtuner_chartmoe/configs/')
               and n.endswith('.py') and '__init__' not in n]
    tools = [n for n in names if n.startswith('xtuner_chartmoe/tools/')]
    assert len(configs) == len([
        f for _, _, files in os.walk(os.path.join(REPO, 'configs'))
        for f in files if f.endswith('.py') and f != '__init__.py'])
    assert 'xtuner_chartmoe/tools/build_moe_connector.py' in tools
    assert 'xtuner_chartmoe/tools/run_tiny_pipeline.py' in tools
    assert 'xtuner_chartmoe/evaluation/sandbox_init.py' in names
    assert ('xtuner_chartmoe/lmms_tasks/chartqa_local/'
            'chartqa_local_human.yaml') in names
    requires = [line.split(': ', 1)[1] for line in metadata.splitlines()
                if line.startswith('Requires-Dist: ')]
    assert 'torch' in requires and 'torchvision' in requires  # unpinned
    assert not any(r.startswith(('torch==', 'torchvision==')) for r in requires)
    for extra in ('deepspeed', 'eval', 'demo', 'test'):
        assert f'Provides-Extra: {extra}' in metadata
    assert 'chartmoe = xtuner_chartmoe.lmms:manifest' in entry_points


def test_installed_commands_work_from_anywhere(installed):
    target, run_dir, env, chartmoe = installed
    where = subprocess.run(
        [sys.executable, '-c', 'import xtuner_chartmoe.cli as c;'
         'print(c.__file__); print(c.config_root())'], cwd=run_dir, env=env,
        capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(str(target)) for path in where)
    names = chartmoe('list-cfg').stdout.split()
    assert 'chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft' in names
    assert len(names) >= 15
    out = chartmoe('copy-cfg', 'chartmoe_tiny_llama_tiny_clip_align_json_e3_cpu',
                   'my_configs').stdout
    assert (run_dir / 'my_configs' /
            'chartmoe_tiny_llama_tiny_clip_align_table_e3_cpu.py').is_file()
    assert 'Copy to' in out
    for command in ('build-moe', 'merge', 'chat', 'demo', 'eval-chartqa',
                    'analyze-routing', 'synthesize', 'build-tiny', 'standin',
                    'pipeline'):
        assert chartmoe(command, '--help').stdout.startswith(
            f'usage: chartmoe {command}')
    assert 'usage: chartmoe benchmark moe' in chartmoe(
        'benchmark', 'moe', '--help').stdout
    assert '--deepspeed' in chartmoe('train', '--help').stdout


def test_installed_tools_run_the_tiny_default_end_to_end(installed):
    _, run_dir, _, chartmoe = installed
    chartmoe('build-tiny', '--out', 'work_dirs/tiny', '--num-charts', '8')
    chartmoe('train', 'chartmoe_tiny_llama_tiny_clip_align_table_e3_cpu',
             '--cfg-options', 'train_dataloader.dataset.times=1')
    work_dir = run_dir / 'work_dirs' / \
        'chartmoe_tiny_llama_tiny_clip_align_table_e3_cpu'
    assert (work_dir / 'last_checkpoint').is_file()
    chartmoe('build-moe', 'diverse', 'work_dirs/moe', '--projectors',
             'general=work_dirs/tiny/general_projector',
             *[f'{role}={work_dir}' for role in ('table', 'json', 'code')])
    config = json.loads((run_dir / 'work_dirs/moe/config.json').read_text())
    assert config['expert_names'] == ['general', 'table', 'json', 'code']


def test_failing_commands_exit_non_zero(installed):
    _, run_dir, _, chartmoe = installed
    assert chartmoe('train', 'no_such_config', check=False).returncode != 0
    assert chartmoe('list-cfg', '-p', 'no_such_stage',
                    check=False).returncode != 0
    bad = chartmoe('train', 'chartmoe_tiny_llama_tiny_clip_align_json_e3_cpu',
                   '--cfg-options', 'data_root=/nowhere/',
                   'train_dataloader.dataset.dataset.data_path=/nowhere/x.json',
                   check=False)
    assert bad.returncode != 0  # `xtuner train` would exit 0 here
    assert 'data file not found: /nowhere/x.json' in bad.stderr
    missing = chartmoe('merge', 'nowhere', 'out', check=False)
    assert missing.returncode == 1 and 'chartmoe_hf.json missing' in \
        missing.stderr
    assert not (run_dir / 'out').exists()
