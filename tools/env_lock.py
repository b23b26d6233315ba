"""The locked CPU environment: make the lock, apply it, check it.

Standard library only (it runs in a bare venv before anything is installed).

    python tools/env_lock.py compile            # regenerate the lock files
    .venv/bin/python tools/env_lock.py sync [--test]  # make this venv so
    .venv/bin/python tools/env_lock.py check [--test]  # say what differs

``requirements/lock-cpu.txt`` pins every distribution the set-up installs
(``pip freeze --all``: pip and setuptools too); ``requirements/lock-test.txt``
pins what the test set-up (``--test``) adds on top. ``compile`` resolves this
package's own requirements (``setup.py``, extras ``deepspeed,eval,demo`` and
then ``test``) in a fresh venv under ``requirements/constraints-cpu.txt``
with pip's resolver, the way ``tools/setup_env.sh`` installed before the
lock, and freezes the result.
"""
import argparse
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK = os.path.join(REPO, 'requirements', 'lock-cpu.txt')
TEST_LOCK = os.path.join(REPO, 'requirements', 'lock-test.txt')
CONSTRAINTS = os.path.join(REPO, 'requirements', 'constraints-cpu.txt')
PROJECT = 'xtuner-chartmoe'
# DeepSpeed is an sdist whose build imports torch: built without isolation,
# against the venv's torch, with none of its CUDA ops.
NO_ISOLATION = {'deepspeed': {'DS_BUILD_OPS': '0'}}
HEADER = """\
# {what} -- generated, do not edit.
# Regenerate (a fresh venv, pip's resolver, then pip freeze --all):
#   python tools/env_lock.py compile
# Applied by tools/setup_env.sh{flag}; checked by tests/test_environment.py.
# Resolved for Python {python} on {platform}.
"""


def canonical(name):
    """PEP 503 name: ``Foo_bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r'[-_.]+', '-', name).lower()


def read_lock(path):
    """``{canonical name: version}`` of the ``name==version`` lines of a lock
    file; any other line but comments is an error naming the file and line."""
    pins = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            match = re.fullmatch(r'([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)', line)
            if not match:
                raise ValueError(f'{path}:{number}: expected name==version, '
                                 f'got {line!r}')
            pins[canonical(match[1])] = match[2]
    return pins


def locked(test=False):
    """The pins the set-up installs (with ``test``: and the test set)."""
    pins = read_lock(LOCK)
    if test:
        pins.update(read_lock(TEST_LOCK))
    return pins


def installed():
    """``{canonical name: version}`` of the distributions installed in this
    interpreter's site-packages (not whatever else is on ``sys.path``, e.g.
    setuptools' vendored packages), this project left out."""
    paths = sorted({sysconfig.get_paths()[k] for k in ('purelib', 'platlib')})
    found = {canonical(d.metadata['Name']): d.version
             for d in metadata.distributions(path=paths)}
    found.pop(PROJECT, None)
    return found


def differences(expected, found):
    """Lines naming what differs between two ``{name: version}`` sets; empty
    when they are equal."""
    lines = []
    for name in sorted(set(expected) | set(found)):
        want, have = expected.get(name), found.get(name)
        if want == have:
            continue
        if have is None:
            lines.append(f'missing: {name}=={want}')
        elif want is None:
            lines.append(f'not in the lock: {name}=={have}')
        else:
            lines.append(f'{name}: installed {have}, locked {want}')
    return lines


def _pip(python, *args, env=None):
    subprocess.run([python, '-m', 'pip', '--disable-pip-version-check',
                    *args], check=True, env=dict(os.environ, **(env or {})))


def sync(test=False, python=sys.executable):
    """Install exactly the locked set into ``python``'s environment (no
    dependency resolution: every version comes from the lock) and remove
    what the lock does not name; this project stays."""
    want = locked(test)
    extra = sorted(set(installed()) - set(want))
    if extra:
        _pip(python, 'uninstall', '-y', '-q', *extra)
    # pip first, with itself: the rest is installed by the locked pip.
    _pip(python, 'install', '-q', '--no-deps', f'pip=={want["pip"]}')
    missing = {n: v for n, v in want.items() if installed().get(n) != v}
    plain = [f'{n}=={v}' for n, v in missing.items() if n not in NO_ISOLATION]
    if plain:
        _pip(python, 'install', '-q', '--no-deps', *plain)
    for name, env in NO_ISOLATION.items():
        if name in missing:
            _pip(python, 'install', '-q', '--no-deps', '--no-build-isolation',
                 f'{name}=={missing[name]}', env=env)


def _install_project(python, extras):
    """What tools/setup_env.sh did before the lock: torch, torchvision and
    XTuner in one pip command (letting pip pick torchvision alone pulls CUDA
    torch), then this package with ``extras``, DeepSpeed built against the
    installed torch."""
    constraint = ['-c', CONSTRAINTS]
    _pip(python, 'install', '-q', '--upgrade', *constraint, 'pip')
    _pip(python, 'install', '-q', *constraint, 'torch', 'torchvision',
         'xtuner')
    plain = [e for e in extras if e != 'deepspeed']
    _pip(python, 'install', '-q', *constraint,
         f'{REPO}[{",".join(plain)}]')
    if 'deepspeed' in extras:
        _pip(python, 'install', '-q', *constraint, '--no-build-isolation',
             'deepspeed', env=NO_ISOLATION['deepspeed'])


def _freeze(python):
    out = subprocess.run([python, '-m', 'pip', 'freeze', '--all',
                          '--exclude-editable'], check=True,
                         capture_output=True, text=True).stdout
    pins = {}
    for line in out.splitlines():
        name, _, version = line.partition('==')
        if version and canonical(name) != PROJECT:
            pins[name] = version
    return pins


def _write(path, what, flag, pins):
    body = ''.join(f'{n}=={v}\n' for n, v in
                   sorted(pins.items(), key=lambda item: canonical(item[0])))
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(HEADER.format(what=what, flag=flag,
                              python='%d.%d' % sys.version_info[:2],
                              platform=sys.platform) + body)
    os.replace(tmp, path)


def compile_lock(python=sys.executable):
    """Resolve in a fresh venv and write both lock files."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([python, '-m', 'venv', tmp], check=True)
        venv_python = os.path.join(tmp, 'bin', 'python')
        _install_project(venv_python, ['deepspeed', 'eval', 'demo'])
        main = _freeze(venv_python)
        _pip(venv_python, 'install', '-q', '-c', CONSTRAINTS,
             f'{REPO}[test]')
        full = _freeze(venv_python)
    test = {n: v for n, v in full.items() if main.get(n) != v}
    changed = [n for n in main if n in test]
    if changed:
        raise RuntimeError(f'the test extras change locked versions: '
                           f'{changed}')
    _write(LOCK, 'The CPU environment of tools/setup_env.sh', '', main)
    _write(TEST_LOCK, 'What the test set-up adds to lock-cpu.txt',
           ' --test', test)
    print(f'wrote {LOCK} ({len(main)} pins), {TEST_LOCK} ({len(test)} pins)')


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='env_lock', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('action', choices=['compile', 'sync', 'check'])
    parser.add_argument('--test', action='store_true',
                        help='include requirements/lock-test.txt')
    args = parser.parse_args(argv)
    if args.action == 'compile':
        compile_lock()
    elif args.action == 'sync':
        sync(args.test)
    diff = differences(locked(args.test), installed())
    if args.action != 'compile' and diff:
        sys.exit('the environment differs from the lock:\n  ' +
                 '\n  '.join(diff))
    return 0


if __name__ == '__main__':
    sys.exit(main())
