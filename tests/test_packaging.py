"""The package as users install it: a wheel with the configs, the commands and
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
    """The wheel installed as a user installs it: with its dependencies
    (extra ``eval``), constrained by the lock, into a fresh venv, no other
    step but the byte-compiling; commands run outside the checkout. The
    installed modules are byte-compiled on every core (``compileall -j 0``, 44 s here) instead of
    one by one by pip (``--no-compile``): the same ``.pyc`` files, which
    every command's start-up needs (where ``PYTHONDONTWRITEBYTECODE`` is
    set, nothing would ever write them)."""
    venv = tmp_path_factory.mktemp('venv')
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env.update(PATH=f'{venv / "bin"}:{env["PATH"]}',
               HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
    install = subprocess.run(
        [str(venv / 'bin' / 'pip'), 'install', '-q', '--no-compile',
         f'{wheel}[eval]', '-c',
         os.path.join(REPO, 'requirements', 'lock-cpu.txt')], env=env,
        capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    # exit status 1: some packages ship files of other Pythons' syntax, as
    # pip's own compile step ignores
    subprocess.run([str(venv / 'bin' / 'python'), '-m', 'compileall', '-q',
                    '-j', '0', str(venv / 'lib')], env=env,
                   capture_output=True)
    run_dir = tmp_path_factory.mktemp('elsewhere')

    def chartmoe(*args, check=True):
        result = subprocess.run([str(venv / 'bin' / 'chartmoe'), *args],
                                cwd=run_dir, env=env, capture_output=True,
                                text=True)
        if check and result.returncode != 0:
            raise AssertionError(f'chartmoe {args} failed:\n'
                                 f'{result.stdout[-3000:]}{result.stderr[-3000:]}')
        return result

    return venv, run_dir, env, chartmoe


def test_wheel_contents_and_requirements(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith('METADATA'))
                           ).decode()
        entry_points = zf.read(next(n for n in names if n.endswith(
            'entry_points.txt'))).decode()
    configs = [n for n in names if n.startswith('xtuner_chartmoe/configs/')
               and n.endswith('.py') and '__init__' not in n]
    commands = [n for n in names if n.startswith('xtuner_chartmoe/commands/')]
    assert len(configs) == len([
        f for _, _, files in os.walk(os.path.join(REPO, 'configs'))
        for f in files if f.endswith('.py') and f != '__init__.py'])
    from xtuner_chartmoe.commands.cli import BENCHMARKS, TOOLS
    for module in [m for m, _ in TOOLS.values()] + list(BENCHMARKS.values()):
        assert f'xtuner_chartmoe/commands/{module}.py' in commands, module
    assert not any(n.startswith('xtuner_chartmoe/tools/') for n in names)
    assert 'xtuner_chartmoe/evaluation/sandbox_init.py' in names
    for data_dir in ('lmms_tasks', 'hf_native_code'):  # not packages
        for folder, _, files in os.walk(os.path.join(
                REPO, 'xtuner_chartmoe', data_dir)):
            for name in files:
                if not name.endswith('.pyc'):
                    path = os.path.relpath(os.path.join(folder, name), REPO)
                    assert path in names, f'{path} is not in the wheel'
    assert 'xtuner_chartmoe_compat.pth' in names  # the start-up file
    requires = [line.split(': ', 1)[1] for line in metadata.splitlines()
                if line.startswith('Requires-Dist: ')]
    assert 'torch' in requires and 'torchvision' in requires  # unpinned
    assert not any(r.startswith(('torch==', 'torchvision==')) for r in requires)
    for extra in ('deepspeed', 'eval', 'demo', 'test'):
        assert f'Provides-Extra: {extra}' in metadata
    assert 'chartmoe = xtuner_chartmoe.apps.lmms:manifest' in entry_points


def test_installed_commands_work_from_anywhere(installed):
    venv, run_dir, env, chartmoe = installed
    where = subprocess.run(
        [str(venv / 'bin' / 'python'), '-c', 'import xtuner_chartmoe.commands.cli as c;'
         'print(c.__file__); print(c.config_root())'], cwd=run_dir, env=env,
        capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(str(venv)) for path in where)
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


SFT = 'chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft'


def test_installed_tools_run_the_tiny_default_end_to_end(installed):
    """build-tiny -> align -> build-moe -> SFT -> lmms-eval's CLI on the
    SFT checkpoint, all in the fresh venv: the start-up fixes came with
    the wheel (no step wrote them)."""
    venv, run_dir, env, chartmoe = installed
    site = subprocess.run(
        [str(venv / 'bin' / 'python'), '-c', 'import sysconfig; '
         'print(sysconfig.get_paths()["purelib"])'], env=env,
        capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.isfile(os.path.join(site, 'xtuner_chartmoe_compat.pth'))
    chartmoe('build-tiny', '--out', 'work_dirs/tiny', '--num-charts', '8')
    chartmoe('train', 'chartmoe_tiny_llama_tiny_clip_align_table_e3_cpu',
             '--cfg-options', 'train_dataloader.dataset.times=1')
    work_dir = run_dir / 'work_dirs' / \
        'chartmoe_tiny_llama_tiny_clip_align_table_e3_cpu'
    assert (work_dir / 'last_checkpoint').is_file()
    chartmoe('build-moe', 'diverse', 'work_dirs/tiny_moe_connector',
             '--projectors', 'general=work_dirs/tiny/general_projector',
             *[f'{role}={work_dir}' for role in ('table', 'json', 'code')])
    config = json.loads((run_dir / 'work_dirs/tiny_moe_connector/'
                         'config.json').read_text())
    assert config['expert_names'] == ['general', 'table', 'json', 'code']
    chartmoe('copy-cfg', SFT, 'my_configs', '--name', 'my_sft')
    chartmoe('train', 'my_configs/my_sft.py', '--cfg-options',
             'train_dataloader.dataset.times=1')
    checkpoint = (run_dir / 'work_dirs' / 'my_sft' / 'last_checkpoint'
                  ).read_text().strip()
    tasks = subprocess.run([str(venv / 'bin' / 'python'), '-m',
                            'xtuner_chartmoe.apps.lmms'], env=env,
                           capture_output=True, text=True, check=True)
    out = run_dir / 'lmms'
    lmms = subprocess.run(
        [str(venv / 'bin' / 'python'), '-m', 'lmms_eval', '--model',
         'chartmoe', '--model_args', f'pretrained={checkpoint},config='
         f'{run_dir}/my_configs/my_sft.py,root={run_dir}', '--batch_size', '2',
         '--tasks', 'chartqa_local_human', '--include_path',
         tasks.stdout.strip(), '--limit', '2', '--log_samples',
         '--output_path', str(out)], cwd=run_dir / 'work_dirs/tiny/data',
        env=env, capture_output=True, text=True)
    samples = list(out.glob('*/*_samples_chartqa_local_human.jsonl'))
    assert samples, lmms.stdout[-3000:] + lmms.stderr[-3000:]
    rows = [json.loads(line) for line in samples[0].read_text().splitlines()]
    assert len(rows) == 2
    assert all('relaxed_overall' in row and 'routing' in row for row in rows)


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


def test_uninstalling_removes_the_start_up_file(installed):
    """Last in this module: the fresh venv loses the package and its
    start-up file together."""
    venv, _, env, _ = installed
    pth = next(venv.glob('lib/python*/site-packages/'
                         'xtuner_chartmoe_compat.pth'))
    subprocess.run([str(venv / 'bin' / 'pip'), 'uninstall', '-y', '-q',
                    'xtuner-chartmoe'], env=env, check=True)
    assert not pth.exists()
    subprocess.run([str(venv / 'bin' / 'python'), '-c', 'import torch'],
                   env=env, check=True)  # interpreters start cleanly
