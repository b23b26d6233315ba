"""The PoT sandbox against hostile programs, one or more per class of
attack: each is stopped (or harmless), scored wrong, and afterwards the
caller has its limits, priority and affinity, and no process or file of the
program is left. Programs print ESCAPED only if the attack worked."""
import glob
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

import pytest

from conftest import REPO
from xtuner_chartmoe.evaluation.chartqa import score
from xtuner_chartmoe.evaluation.sandbox import (UID_BASE, UID_COUNT,
                                                ProgramResult, require,
                                                run_program, run_programs)

pytestmark = pytest.mark.skipif(
    sys.platform != 'linux', reason='the sandbox is Linux namespaces')

ORDINARY = {
    'print(round(sum([1.5, 2.25]) / 2, 2))': '1.88',
    'import math, statistics\nprint(statistics.median([3, 1, 2]))': '2',
    'open("scratch.txt", "w").write("ok")\nprint(open("scratch.txt").read())':
    'ok',
    'import threading\nout = []\nt = threading.Thread(target=out.append, '
    'args=(7,))\nt.start(); t.join()\nprint(out[0])': '7',
    'import os\nprint(os.getuid(), os.getgid(), os.getcwd(), os.listdir("."))':
    "65534 65534 /work []",
    'print(open("/proc/self/status").read().split("CapEff:")[1].split()[0])':
    '0000000000000000',
}

LABEL_FILE = '/tmp/chartmoe_test_labels.json'
MARKERS = ('/tmp/chartmoe_escape', '/var/tmp/chartmoe_escape')

HOSTILE = {
    # -- switching the guard off from inside: there is no guard inside
    'replace builtins and posixpath': '''
import builtins, posixpath, io
posixpath.realpath = lambda p, *a, **k: "/work/x"
builtins.open = io.open
print("ESCAPED", open("/etc/passwd").read()[:20])''',
    'gc and closures': '''
import gc
for obj in gc.get_objects():
    if callable(obj) and getattr(obj, "__closure__", None):
        for cell in obj.__closure__:
            try: cell.cell_contents = None
            except Exception: pass
print("ESCAPED", open("/etc/hostname").read())''',
    'sub-interpreter': '''
import _xxsubinterpreters as interpreters
interp = interpreters.create()
interpreters.run_string(interp, "print('ESCAPED', open('/etc/passwd').read())")''',
    'native extension from the work dir': '''
import glob, shutil, sys
source = glob.glob(sys.prefix + "/lib/python3*/lib-dynload/_json*.so")[0]
shutil.copy(source, "_json.cpython-3-x86_64-linux-gnu.so")
sys.path.insert(0, ".")
import importlib.machinery, importlib.util
spec = importlib.util.spec_from_file_location(
    "_json", "/work/_json.cpython-3-x86_64-linux-gnu.so")
importlib.util.module_from_spec(spec)
print("ESCAPED")''',
    'ctypes unshare and mount': '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000 | 0x20000) == 0 or libc.mount(
        b"none", b"/usr", b"tmpfs", 0, None) == 0:
    print("ESCAPED")
raise SystemExit(1)''',
    'execve a shell': 'import os\nos.execv("/bin/sh", ["sh", "-c", "echo ESCAPED"])',
    # -- paths: the kernel checks them, whatever the route
    'chdir and same-name symlink': '''
import os
os.symlink("/etc", "etc")
os.chdir("etc")
print("ESCAPED", open("passwd").read())''',
    'rename, link, symlink, mknod, mkfifo destinations': '''
import os
open("a", "w").write("x")
done = []
for make in (lambda: os.rename("a", "/usr/lib/a"),
             lambda: os.replace("a", "/tmp/chartmoe_escape"),
             lambda: os.link("a", "/usr/lib/b"),
             lambda: os.symlink("/work/a", "/usr/lib/c"),
             lambda: os.mknod("/usr/lib/d"),
             lambda: os.mkfifo("/usr/lib/e")):
    try:
        make(); done.append(1)
    except OSError:
        pass
print("ESCAPED" if done else "stopped")
raise SystemExit(1)''',
    'O_RDONLY|O_CREAT|O_TRUNC': '''
import os, sysconfig
path = sysconfig.get_paths()["stdlib"] + "/this_file_is_new.py"
os.open(path, os.O_RDONLY | os.O_CREAT | os.O_TRUNC)
print("ESCAPED")''',
    'fchmod and fchown on a read-only descriptor': '''
import os, sysconfig
fd = os.open(sysconfig.get_paths()["stdlib"] + "/os.py", os.O_RDONLY)
os.fchmod(fd, 0o777)
print("ESCAPED")''',
    'readline history outside': '''
import readline
readline.add_history("x")
readline.write_history_file("/root/.python_history")
print("ESCAPED")''',
    'spwd reads /etc/shadow': '''
import spwd
entries = spwd.getspall()
print("ESCAPED" if entries else "empty")
raise SystemExit(1)''',
    'POSIX shared memory in /dev/shm': '''
from multiprocessing import shared_memory
shared_memory.SharedMemory(name="chartmoe_escape", create=True, size=4096)
print("ESCAPED")''',
    'rename the work dir away': 'import os\nos.rename("/work", "/work_gone")\n'
    'print("ESCAPED")',
    'write the host /tmp': 'open("/tmp/chartmoe_escape", "w").write("x")\n'
    'print("ESCAPED")',
    'list the host': 'import os\nprint("ESCAPED", os.listdir("/root"))',
    # -- harming the caller
    'prlimit on the parent': '''
import os, resource
for pid in (os.getppid(), 1, 0):
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, 3))
    except Exception:
        pass
print("done")''',
    'pidfd_send_signal to the parent': '''
import os, signal
fd = os.pidfd_open(os.getppid())
signal.pidfd_send_signal(fd, signal.SIGKILL)
print("ESCAPED")''',
    'kill every pid it can see': '''
import os, signal
for pid in range(1, 4096):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
print("done")''',
    'renice and pin the parent': '''
import os
os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)
os.sched_setaffinity(os.getppid(), {0})
print("ESCAPED")''',
    'stderr flood': 'import sys\nwhile True:\n    sys.stderr.write("x" * 65536)',
    'stdout flood': 'while True:\n    print("x" * 1000)',
    'memfd_create past the memory limit': '''
import os
fd = os.memfd_create("big")
for _ in range(2048):
    os.write(fd, b"x" * (1 << 20))
print("ESCAPED")''',
    '3 GB of disk': '''
with open("big", "wb") as f:
    for _ in range(3 * 1024):
        f.write(b"x" * (1 << 20))
print("ESCAPED")''',
    'inode flood': '''
for i in range(100000):
    open(f"f{i}", "w").close()
print("ESCAPED")''',
    'fork and setsid orphan': '''
import os, time
if os.fork() == 0:
    os.setsid()
    time.sleep(100)
print("ESCAPED")''',
    'fork bomb': 'import os\nwhile True:\n    os.fork()',
    'thread bomb': '''
import threading, time
threads = [threading.Thread(target=time.sleep, args=(30,)) for _ in range(10000)]
for t in threads:
    t.start()
print("ESCAPED")''',
    '10 GB allocation': 'x = bytearray(10 * 1024 ** 3)\nprint("ESCAPED")',
    'infinite loop': 'while True:\n    pass',
    'sockets and network': '''
import socket
socket.create_connection(("1.1.1.1", 80), timeout=1)
print("ESCAPED")''',
    'SysV shared memory': '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.shmget(0, 1 << 30, 0o1000 | 0o600) >= 0:
    print("ESCAPED")
raise SystemExit(1)''',
    # -- scoring: the labels are not in view
    'read the label file': f'''
import json
print(json.load(open({LABEL_FILE!r}))[0]["label"])''',
}


def sandbox_processes():
    """Processes a sandbox could have left (zombies too): host uids of the
    sandbox range, or children of this test process."""
    found = []
    for status in glob.glob('/proc/[0-9]*/status'):
        try:
            with open(status) as f:
                fields = dict(line.split(':', 1) for line in f if ':' in line)
        except OSError:
            continue
        uid = int(fields['Uid'].split()[0])
        if UID_BASE <= uid < UID_BASE + UID_COUNT or int(
                fields['PPid']) == os.getpid():
            found.append((status, fields['Name'].strip()))
    return set(found)


def caller_state():
    limits = {name: resource.getrlimit(getattr(resource, name))
              for name in dir(resource) if name.startswith('RLIMIT_')}
    return limits, os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0)


@pytest.fixture(scope='module')
def label_file():
    with open(LABEL_FILE, 'w') as f:
        json.dump([{'imgname': 'x.png', 'query': 'q', 'label': '42'}], f)
    yield LABEL_FILE
    os.remove(LABEL_FILE)


@pytest.mark.parametrize('code,expected', list(ORDINARY.items()))
def test_ordinary_programs_run(code, expected):
    result = run_program(code)
    assert result == ProgramResult(True, expected, '')


@pytest.mark.parametrize('name', list(HOSTILE))
def test_hostile_program_is_stopped_and_scored_wrong(name, label_file):
    before, processes = caller_state(), sandbox_processes()
    start = time.monotonic()
    result = run_program(HOSTILE[name], timeout=3)
    assert time.monotonic() - start < 15
    assert 'ESCAPED' not in result.stdout, result
    if name not in ('prlimit on the parent', 'kill every pid it can see'):
        assert not result.ok, result
    # a program that prints the right answer from the label file would score
    row = score([{'query': 'q', 'label': '42'}],
                [f'```python\n{HOSTILE[name]}\n```'], 'pot', pot_workers=1)
    assert row[0]['correct'] == {'0.05': False, '0.1': False, '0.2': False}
    assert caller_state() == before
    assert sandbox_processes() <= processes
    for marker in MARKERS:
        assert not osp.exists(marker)
    assert not glob.glob('/dev/shm/*chartmoe_escape*')


def test_specific_stops():
    """The kernel's own answers, not a message from a guard."""
    cases = {
        HOSTILE['fork and setsid orphan']: 'Operation not permitted',
        HOSTILE['memfd_create past the memory limit']:
        'Operation not permitted',
        HOSTILE['3 GB of disk']: 'File too large',
        HOSTILE['inode flood']: 'No space left on device',
        HOSTILE['write the host /tmp']: 'No such file or directory',
        HOSTILE['O_RDONLY|O_CREAT|O_TRUNC']: 'Read-only file system',
        HOSTILE['10 GB allocation']: 'MemoryError',
        HOSTILE['infinite loop']: 'timed out after 3 s',
        HOSTILE['stdout flood']: 'output larger than 10000 bytes on stdout',
        HOSTILE['stderr flood']: 'output larger than 64000 bytes on stderr',
        HOSTILE['native extension from the work dir']:
        'failed to map segment',
    }
    for code, expected in cases.items():
        result = run_program(code, timeout=3)
        assert expected in result.error, (code, result)


def test_programs_do_not_see_each_other():
    first = run_program('open("left_behind", "w").write("x")\nprint("w")')
    second = run_program('import os\nprint(os.listdir("."))')
    assert first.ok and second.stdout == '[]'


def test_run_programs_keeps_order_and_mixes_good_and_bad():
    codes = [f'print({i})' if i % 3 else 'while True: pass'
             for i in range(7)]
    processes = sandbox_processes()
    results = run_programs(codes, workers=2, timeout=2)
    assert [r.stdout for r in results if r.ok] == ['1', '2', '4', '5']
    assert all('timed out' in r.error for r in results[::3])
    assert sandbox_processes() <= processes


def test_hostile_programs_scored_wrong_and_evaluation_goes_on():
    entries = [{'query': 'q', 'label': '3'}] * 4
    replies = ['```python\nprint(1 + 2)\n```', 'while True: pass',
               'import os\nos.fork()', 'print(True)']
    rows = score(entries, replies, 'pot', pot_workers=4)
    assert [r['answer'] for r in rows] == ['3', '', '', 'Yes']
    assert [r['correct']['0.05'] for r in rows] == [True, False, False, False]
    assert 'timed out' in rows[1]['error']


def _run_python(code, env=None, user=None):
    return subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, cwd=REPO, env=env, user=user,
                          timeout=120)


def test_fails_closed_without_bubblewrap(tmp_path):
    """No bwrap on PATH: the run raises one clear line, nothing runs."""
    marker = tmp_path / 'ran'
    env = dict(os.environ, PATH=str(tmp_path))
    out = _run_python(
        'from xtuner_chartmoe.evaluation.sandbox import run_program\n'
        f'run_program("open({str(marker)!r}, \'w\')")', env=env)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith('xtuner_chartmoe.evaluation.sandbox.'
                           'SandboxUnavailable: PoT needs a sandbox')
    assert 'apt-get install bubblewrap' in last
    assert not marker.exists()


def test_eval_tool_stops_with_one_line_without_bubblewrap(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'eval_chartqa.py'),
         '--release', str(tmp_path / 'no_model'), '--data-root',
         str(tmp_path), '--out', str(tmp_path / 'out'), '--modes', 'pot'],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().count('\n') == 0, out.stderr
    assert 'bubblewrap' in out.stderr and 'apt-get install' in out.stderr


@pytest.mark.skipif(os.getuid() != 0, reason='needs root to switch uid')
def test_unprivileged_caller_gets_the_same_isolation():
    """A non-root user (uid 65534 here) runs the sandbox too (bwrap
    unprivileged, own user namespace)."""
    if not osp.isfile('/usr/bin/python3') or not os.stat(REPO).st_mode & 1:
        pytest.skip('needs /usr/bin/python3 and a world-readable checkout')
    code = ('import sys; sys.path.insert(0, %r)\n'
            'from xtuner_chartmoe.evaluation.sandbox import run_program\n'
            'print(run_program("import os; print(os.getuid())").stdout)\n'
            'print(run_program("import os\\nos.fork()").error)\n'
            'print(run_program("print(open(\'/etc/passwd\').read())").ok)\n'
            % REPO)
    out = subprocess.run(['/usr/bin/python3', '-c', code], user=65534,
                         group=65534, extra_groups=[], capture_output=True,
                         text=True, cwd='/', timeout=120,
                         env={'PATH': os.environ['PATH']})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split('\n')[:3] == [
        '65534', 'PermissionError: [Errno 1] Operation not permitted',
        'False']


def test_sandbox_is_required_before_use():
    assert require().read_paths  # detected and self-tested here
