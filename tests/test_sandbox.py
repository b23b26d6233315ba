"""The PoT sandbox against hostile programs, one or more per class of
attack: each is stopped (or harmless), scored wrong, and afterwards the
caller has its limits, priority and affinity, and no process or file of the
program is left. Programs print ESCAPED only if the attack worked. Realistic
programs (``sandbox_programs.py``) show that nothing benign is blocked; the
whole file runs again as a non-root caller."""
import ctypes
import errno
import fcntl
import glob
import itertools
import json
import os
import os.path as osp
import resource
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO
from sandbox_programs import BENIGN
from xtuner_chartmoe.evaluation import sandbox
from xtuner_chartmoe.evaluation.benchmarks.base import Sample
from xtuner_chartmoe.evaluation.benchmarks.chartqa import OURS, ChartQA
from xtuner_chartmoe.evaluation.benchmarks.runner import pot_answers
from xtuner_chartmoe.evaluation.sandbox import (UID_BASE, UID_COUNT,
                                                ProgramResult, require,
                                                run_program, run_programs)

def score(labels, replies, workers):
    """PoT replies scored as the ChartQA evaluation scores them: per
    reply ``(answer, sandbox error, correct at each tolerance)``."""
    ran = pot_answers(replies, OURS, workers)
    rows, _ = ChartQA().score(
        [Sample(str(i), 'human', None, 'q', (label,))
         for i, label in enumerate(labels)], [a for a, _ in ran], OURS)
    return [(answer, result.error, row['correct'])
            for (answer, result), row in zip(ran, rows)]


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

LABEL_FILE = f'/tmp/chartmoe_test_labels_{os.getuid()}.json'
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
    # -- kernel objects counted for the whole host
    'aio contexts from the host-wide pool': '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
io_setup = {"x86_64": 206, "aarch64": 0}[os.uname().machine]
contexts = []
while len(contexts) < 64:
    ctx = ctypes.c_ulong(0)
    if libc.syscall(io_setup, 1024, ctypes.byref(ctx)) != 0:
        break
    contexts.append(ctx)
if contexts:
    print("ESCAPED", len(contexts))
raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))''',
    'io_uring instance': '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
if libc.syscall(425, 8, params) >= 0:
    print("ESCAPED")
raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))''',
    'huge pages from the host pool': '''
import mmap
mmap.mmap(-1, 2 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40000)
print("ESCAPED")''',
    'sync every file system of the host': '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.syscall({"x86_64": 162, "aarch64": 81}[os.uname().machine]) == 0:
    print("ESCAPED")
raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))''',
    'a key in the user keyring': '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
add_key = {"x86_64": 248, "aarch64": 217}[os.uname().machine]
if libc.syscall(add_key, b"user", b"chartmoe", b"x", 1, -4) >= 0:
    print("ESCAPED")
raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))''',
    # -- the host through the files bound read-only
    'lock a host file': '''
import fcntl, sysconfig
f = open(sysconfig.get_paths()["stdlib"] + "/os.py")
fcntl.flock(f, fcntl.LOCK_SH)
print("ESCAPED")''',
    'flush the host disk with fsync': '''
import os, sysconfig
os.fsync(os.open(sysconfig.get_paths()["stdlib"] + "/os.py", os.O_RDONLY))
print("ESCAPED")''',
    'evict the host page cache': '''
import os, sysconfig
fd = os.open(sysconfig.get_paths()["stdlib"] + "/os.py", os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
print("ESCAPED")''',
    # -- resources counted per user (a non-root caller's own)
    'grow pipe buffers': '''
import fcntl, os
pipes = [os.pipe() for _ in range(16)]
for _, end in pipes:
    fcntl.fcntl(end, fcntl.F_SETPIPE_SZ, 1 << 20)
print("ESCAPED")''',
    'inotify instances': '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if max(libc.inotify_init1(0) for _ in range(32)) >= 0:
    print("ESCAPED")
raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))''',
    'queue real-time signals': '''
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
queued = 0
while queued < 10000 and libc.sigqueue(os.getpid(), signal.SIGRTMIN, 0) == 0:
    queued += 1
if queued > 64:
    print("ESCAPED", queued)
raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))''',
    'POSIX timers': '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
timer = ctypes.c_void_p()
if libc.timer_create(0, None, ctypes.byref(timer)) == 0:
    print("ESCAPED")
raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))''',
    'as many pipes as it likes': '''
import os
pipes = []
try:
    while len(pipes) < 1000:
        pipes.append(os.pipe())
finally:
    if len(pipes) > 32:
        print("ESCAPED", len(pipes))''',
    # -- core dumps: the program's memory never reaches a crash handler
    'stay dumpable': '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
if libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 or libc.prctl(
        PR_SET_DUMPABLE, 1, 0, 0, 0) == 0:
    print("ESCAPED")
raise SystemExit(1)''',
    'raise the core limit and crash': '''
import ctypes, resource
try:
    resource.setrlimit(resource.RLIMIT_CORE, (1 << 30, 1 << 30))
    print("ESCAPED")
finally:
    ctypes.string_at(0)''',
    # -- scoring: the labels are not in view
    'read the label file': f'''
import json
print(json.load(open({LABEL_FILE!r}))[0]["label"])''',
}


INIT_MARKER = b'First code run inside the PoT sandbox'


def sandbox_processes():
    """Processes a sandbox could have left (zombies too): host uids of the
    sandbox range, children of this test process, and bwrap or the
    sandbox's interpreter under this test's uid (a non-root caller's
    sandboxes run under it)."""
    found = []
    for folder in glob.glob('/proc/[0-9]*'):
        try:
            with open(f'{folder}/status') as f:
                fields = dict(line.split(':', 1) for line in f if ':' in line)
            with open(f'{folder}/cmdline', 'rb') as f:
                cmdline = f.read()
        except OSError:
            continue
        uid, name = int(fields['Uid'].split()[0]), fields['Name'].strip()
        ours = uid == os.getuid() and (name == 'bwrap'
                                       or INIT_MARKER in cmdline)
        if UID_BASE <= uid < UID_BASE + UID_COUNT or ours or int(
                fields['PPid']) == os.getpid():
            found.append((folder, name))
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


def test_realistic_programs_are_not_blocked():
    """Nothing benign is refused: math, statistics, fractions, decimal,
    json, re, datetime, itertools, collections, csv and files in the work
    dir, threads, ... each prints what it prints unconfined."""
    names = list(BENIGN)
    results = run_programs([BENIGN[n][0] for n in names], workers=2)
    failed = {name: result for name, result in zip(names, results)
              if result != ProgramResult(True, BENIGN[name][1], '')}
    assert not failed


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
    (_, _, correct), = score(['42'], [f'```python\n{HOSTILE[name]}\n```'],
                             workers=1)
    assert correct == {'0.05': False, '0.1': False, '0.2': False}
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
        HOSTILE['aio contexts from the host-wide pool']:
        'Operation not permitted',
        HOSTILE['io_uring instance']: 'Operation not permitted',
        HOSTILE['huge pages from the host pool']: 'Operation not permitted',
        HOSTILE['sync every file system of the host']:
        'Operation not permitted',
        HOSTILE['grow pipe buffers']: 'Operation not permitted',
        HOSTILE['inotify instances']: 'Operation not permitted',
        HOSTILE['queue real-time signals']: 'Operation not permitted',
        HOSTILE['POSIX timers']: 'Operation not permitted',
        HOSTILE['raise the core limit and crash']: 'killed by signal 11',
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
    replies = ['```python\nprint(1 + 2)\n```', 'while True: pass',
               'import os\nos.fork()', 'print(True)']
    rows = score(['3'] * 4, replies, workers=4)
    assert [answer for answer, _, _ in rows] == ['3', '', '', 'Yes']
    assert [correct['0.05'] for _, _, correct in rows] == [
        True, False, False, False]
    assert 'timed out' in rows[1][1]


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


# -- the caller interrupted while programs run: nothing is left running

SLEEPER = ('import threading, time\n'
           'for _ in range(4):\n'
           '    threading.Thread(target=time.sleep, args=(60,)).start()\n'
           'time.sleep(60)')


def test_alarm_in_the_caller_kills_the_sandbox():
    """An alarm whose handler raises (an evaluation's timeout) while a
    program runs: the call raises at once, and the sandbox is gone."""
    require()
    before, running = sandbox_processes(), []

    def expire(*_):
        running.append(sandbox_processes() - before)
        raise TimeoutError('the evaluation timed out')

    previous = signal.signal(signal.SIGALRM, expire)
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        with pytest.raises(TimeoutError):
            run_program(SLEEPER, timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < 5
    assert running[0], 'the program was not running when the alarm came'
    assert sandbox_processes() <= before


def test_ctrl_c_during_a_batch_stops_every_sandbox():
    """Ctrl-C while ``run_programs`` waits: the running programs are
    killed, the queued ones never start, and the interrupt goes on."""
    require()
    before, running = sandbox_processes(), []

    def interrupt(*_):
        raise KeyboardInterrupt

    def press_ctrl_c():
        running.append(sandbox_processes() - before)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, interrupt)
    timer = threading.Timer(1.5, press_ctrl_c)
    start = time.monotonic()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            run_programs([SLEEPER] * 6, workers=2, timeout=60)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 5
    assert running[0], 'no program was running at Ctrl-C'
    assert sandbox_processes() <= before


def test_exception_in_the_calling_thread_kills_the_sandbox():
    """An exception raised into the thread that waits on a program (as a
    watchdog does): that thread's call raises promptly, sandbox gone."""
    require()
    before, outcome = sandbox_processes(), []

    def call():
        try:
            run_program(SLEEPER, timeout=60)
        except BaseException as err:  # noqa: B902 -- what the test checks
            outcome.append(err)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(1.5)
    running = sandbox_processes() - before
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(TimeoutError))
    thread.join(5)
    assert not thread.is_alive() and isinstance(outcome[0], TimeoutError)
    assert running, 'the program was not running'
    assert sandbox_processes() <= before


def test_interrupted_at_any_moment_leaves_nothing():
    """Alarms swept over the first 150 ms of a call (detection, bwrap's
    start, the set-up, the program, the clean-up), for one program and for
    a batch: each call raises the alarm's exception, and no sandbox is left
    when it does."""
    require()
    before = sandbox_processes()

    class Alarm(Exception):
        pass

    def ring(*_):
        raise Alarm

    previous = signal.signal(signal.SIGALRM, ring)
    left = {}
    try:
        for step in range(40):
            with pytest.raises(Alarm):
                signal.setitimer(signal.ITIMER_REAL, 0.0001 + step * 0.004)
                if step % 2:
                    run_program('import time; time.sleep(2)', timeout=5)
                else:
                    run_programs(['import time; time.sleep(2)'] * 3,
                                 workers=2, timeout=5)
            left[step] = sandbox_processes() - before
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not any(left.values()), left


# -- set-up failures: that program fails, the batch goes on, nothing left

def test_failed_start_fails_that_program_only(monkeypatch):
    """The caller cannot start bwrap for one program (out of processes):
    that program fails with the reason, the others run, and no descriptor
    or process is left."""
    require()
    real_popen, calls = subprocess.Popen, itertools.count()

    def popen(*args, **kwargs):
        if next(calls) == 1:
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(sandbox.subprocess, 'Popen', popen)
    fds, before = len(os.listdir('/proc/self/fd')), sandbox_processes()
    results = run_programs(['print(1)', 'print(2)', 'print(3)'], workers=1)
    assert results == [
        ProgramResult(True, '1'),
        ProgramResult(False, '', 'sandbox failed: BlockingIOError: [Errno '
                      '11] Resource temporarily unavailable'),
        ProgramResult(True, '3')]
    assert len(os.listdir('/proc/self/fd')) == fds
    assert sandbox_processes() <= before


def test_failure_after_bwrap_started_kills_it(monkeypatch):
    """bwrap and its pid 1 exist when the caller fails (out of descriptors
    for the pidfd): the program fails, and both are killed and reaped."""
    require()

    def no_descriptor(*_):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(sandbox.os, 'pidfd_open', no_descriptor)
    before, start = sandbox_processes(), time.monotonic()
    result = run_program('print(1)')
    assert result == ProgramResult(
        False, '', 'sandbox failed: OSError: [Errno 24] Too many open files')
    assert time.monotonic() - start < 5
    assert sandbox_processes() <= before


NON_ROOT = pytest.mark.skipif(
    os.getuid() == 0, reason='a non-root caller (run by '
    'test_whole_file_as_an_unprivileged_caller)')


def _use_up_pipe_pages():
    """Grow pipes until this user's pipe pages are used up (as a program
    running under the caller's uid could have done); returns their
    descriptors."""
    held = []
    while len(held) < 4000:
        read_end, write_end = os.pipe()
        held += [read_end, write_end]
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1 << 20)
        except PermissionError:
            return held
    for fd in held:
        os.close(fd)
    pytest.fail('the pipe pages of this user never ran out')


@NON_ROOT
def test_caller_out_of_pipe_pages_still_runs_programs():
    """Pipe pages are counted per user: with the caller's used up, the
    sandbox still starts, and a large program still gets through."""
    require()
    held = _use_up_pipe_pages()
    try:
        results = run_programs(
            ['print(1)', '# ' + 'x' * 300_000 + '\nprint(2)'], workers=2)
    finally:
        for fd in held:
            os.close(fd)
    assert results == [ProgramResult(True, '1'), ProgramResult(True, '2')]


@NON_ROOT
def test_caller_out_of_processes_fails_the_program_not_the_call():
    """The kernel refuses the caller a process for bwrap: a failed result
    saying so, not an exception."""
    checked = require()
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, hard))
    try:
        result = checked.run('print(1)')
    finally:
        resource.setrlimit(resource.RLIMIT_NPROC, (soft, hard))
    assert result == ProgramResult(
        False, '', 'sandbox failed: BlockingIOError: [Errno 11] Resource '
        'temporarily unavailable')


@pytest.mark.skipif(os.getuid() != 0, reason='needs root to switch uid')
def test_whole_file_as_an_unprivileged_caller():
    """Every test of this file again as uid 65534: bwrap unprivileged, the
    programs under the caller's own uid (so its per-user limits are
    shared), the realistic programs, and the non-root-only tests."""
    python = '/usr/bin/python3'
    if not osp.isfile(python) or not os.stat(REPO).st_mode & 1:
        pytest.skip('needs /usr/bin/python3 and a world-readable checkout')
    site_packages = osp.dirname(osp.dirname(pytest.__file__))
    env = {'PATH': os.environ['PATH'], 'HOME': '/tmp',
           'PYTHONDONTWRITEBYTECODE': '1',
           'PYTHONPATH': os.pathsep.join([REPO, site_packages])}
    out = subprocess.run(
        [python, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rs',
         osp.join(REPO, 'tests', 'test_sandbox.py')], user=65534,
        group=65534, extra_groups=[], capture_output=True, text=True,
        cwd='/', env=env, timeout=900)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
    summary = out.stdout.strip().splitlines()[-1]
    assert ' passed' in summary and '1 skipped' in summary, summary


def test_sandbox_is_required_before_use():
    assert require().read_paths  # detected and self-tested here
