"""The locked environment (requirements/lock-*.txt, tools/env_lock.py), the
start-up file the package ships, and the release guards of our extras."""
import importlib.util
import os
import subprocess
import sys
import sysconfig

import pytest

from conftest import REPO


def load_env_lock():
    spec = importlib.util.spec_from_file_location(
        'env_lock', os.path.join(REPO, 'tools', 'env_lock.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


env_lock = load_env_lock()


def test_this_environment_equals_the_lock():
    """What tools/setup_env.sh --test installed is the lock, to the version:
    every locked distribution, nothing else (this project aside)."""
    diff = env_lock.differences(env_lock.locked(test=True),
                                env_lock.installed())
    assert not diff, ('the environment differs from requirements/lock-cpu.txt'
                      ' + lock-test.txt (run bash tools/setup_env.sh --test):'
                      '\n' + '\n'.join(diff))


def test_the_lock_pins_the_verified_set_and_its_bounds():
    pins = env_lock.locked(test=True)
    assert len(pins) > 150  # direct and transitive
    assert pins['torch'].split('+')[0] == '2.13.0'
    assert pins['torchvision'] == '0.28.0'
    assert pins['xtuner'] == '0.2.0'
    assert pins['transformers'] == '4.48.0'
    assert pins['mmengine'] == '0.10.6'
    assert pins['deepspeed'] == '0.16.2'
    assert tuple(map(int, pins['filelock'].split('.')[:2])) < (4, 3)
    assert {'pip', 'setuptools', 'pytest', 'selenium'} <= set(pins)
    # the test set only adds to the main set
    assert not set(env_lock.read_lock(env_lock.LOCK)) & set(
        env_lock.read_lock(env_lock.TEST_LOCK))


def test_differences_name_each_package_and_both_versions():
    assert env_lock.differences({'a': '1'}, {'a': '1'}) == []
    assert env_lock.differences(
        {'torch': '2.13.0', 'numpy': '2.4.6'},
        {'torch': '2.14.1', 'filelock': '4.3.1'}) == [
        'not in the lock: filelock==4.3.1', 'missing: numpy==2.4.6',
        'torch: installed 2.14.1, locked 2.13.0']


def test_a_lock_line_that_is_not_a_pin_is_named(tmp_path):
    lock = tmp_path / 'lock.txt'
    lock.write_text('# header\nFoo_Bar==1.0\n\nbaz>=2\n')
    with pytest.raises(ValueError, match=r'lock.txt:4: expected '
                       r"name==version, got 'baz>=2'"):
        env_lock.read_lock(str(lock))
    lock.write_text('Foo_Bar.x==1.0  # why\n')
    assert env_lock.read_lock(str(lock)) == {'foo-bar-x': '1.0'}


def test_check_reports_what_differs(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(REPO, 'tools',
                                                       'env_lock.py'),
                          'check', '--test'], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert subprocess.run([sys.executable, os.path.join(
        REPO, 'tools', 'env_lock.py'), 'check'], capture_output=True,
        text=True).stderr.startswith(
            'the environment differs from the lock:\n  not in the lock: ')


def test_the_installed_package_ships_the_start_up_file():
    """`pip install -e .` (the set-up) put the start-up file into
    site-packages; it registers the fixes' import hooks in every
    interpreter, unless XTUNER_CHARTMOE_COMPAT=0."""
    site = sysconfig.get_paths()['purelib']
    path = os.path.join(site, 'xtuner_chartmoe_compat.pth')
    with open(path) as f, open(os.path.join(
            REPO, 'xtuner_chartmoe_compat.pth')) as source:
        assert f.read() == source.read()
    code = ('import sys; print(sorted(h.name for h in sys.meta_path '
            'if type(h).__name__ == "_ImportHook"))')
    hooks = subprocess.run([sys.executable, '-c', code], capture_output=True,
                           text=True, check=True, cwd='/').stdout
    assert "'torchvision'" in hooks and "'xtuner.utils.device'" in hooks
    off = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True, cwd='/',
                         env=dict(os.environ, XTUNER_CHARTMOE_COMPAT='0'))
    assert off.stdout.strip() == '[]'


def test_known_bad_releases_stop_with_one_clear_line(monkeypatch):
    from xtuner_chartmoe.engine import version_guard
    versions = {'filelock': '4.3.1', 'deepspeed': '0.16.2'}
    monkeypatch.setattr(version_guard.metadata, 'version',
                        lambda name: versions[name])
    with pytest.raises(version_guard.IncompatibleVersionError,
                       match=r"^filelock 4\.3\.1 breaks lmms-eval: it removed "
                       r"filelock\._api.*pip install 'filelock<4\.3'$"):
        version_guard.check('lmms-eval')
    version_guard.check('deepspeed')  # 0.16.2: fine
    versions['deepspeed'] = '0.19.0'
    with pytest.raises(ValueError, match=r"deepspeed 0\.19\.0 breaks "
                       r"deepspeed: .*pip install 'deepspeed<0\.19'"):
        version_guard.check('deepspeed')
    versions['filelock'] = '4.2.12'
    version_guard.check('lmms-eval')


def test_chartmoe_train_with_deepspeed_names_a_bad_release(tmp_path):
    """The guard runs before XTuner starts (one line, status 1)."""
    code = ('import sys; from importlib import metadata; real = '
            'metadata.version; metadata.version = lambda n: "0.19.1" if n == '
            '"deepspeed" else real(n); from xtuner_chartmoe.commands.cli import main; '
            'sys.exit(main(["train", "chartmoe_tiny_llama_tiny_clip_align_'
            'table_e3_cpu", "--deepspeed", "deepspeed_zero2"]))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: deepspeed 0.19.1 breaks deepspeed: it removed a module that "
        "mmengine 0.10 imports for its DeepSpeed strategy; install a release "
        "before 0.19: pip install 'deepspeed<0.19'"]
