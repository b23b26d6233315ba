"""Run untrusted program-of-thought code in a locked-down child process.

Every program runs in its own fresh interpreter (``python -I``), never in the
caller's process, with:

- a wall-clock limit (the whole process group is killed) and a CPU limit;
- an address-space limit (a 10 GB allocation fails with MemoryError);
- stdout read incrementally and capped (a flood is cut and scored as failed);
- a fresh temporary working directory, removed afterwards;
- a new network namespace when the OS allows it (no interfaces at all), and
  in any case an audit hook, installed before the program runs and impossible
  to remove from Python, that refuses sockets, fork/exec/subprocess/system,
  signals, ctypes, and any file or directory access outside the temporary
  directory except reading Python's own library folders (imports).

``run_program(code)`` returns a :class:`ProgramResult`; ``run_programs``
runs many with a thread pool, each still in its own process.
"""
import ctypes
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000

# Runs in the child before the program: the audit hook and nothing else.
_GUARD = r'''
import sys
def _make_guard(workdir, read_roots):
    import os.path
    blocked_prefixes = ('socket.', 'subprocess.', 'os.fork', 'os.exec',
                        'os.posix_spawn', 'os.spawn', 'os.system', 'os.kill',
                        'os.killpg', 'pty.', 'ctypes.', 'signal.',
                        'resource.setrlimit',
                        'sys.addaudithook', 'cpython.run_', 'winreg.',
                        'webbrowser.', 'urllib.Request', 'http.client.',
                        'ftplib.', 'smtplib.', 'poplib.', 'imaplib.',
                        'telnetlib.', 'nntplib.', 'sqlite3.connect',
                        'shutil.', 'tempfile.')
    path_events = {'open', 'os.listdir', 'os.scandir', 'os.chdir',
                   'os.remove', 'os.rename', 'os.rmdir', 'os.mkdir',
                   'os.link', 'os.symlink', 'os.truncate', 'os.chmod',
                   'os.chown', 'os.utime', 'glob.glob', 'os.walk',
                   'os.chflags', 'os.lchflags', 'os.setxattr',
                   'os.removexattr', 'os.listxattr', 'os.getxattr'}
    read_only = {'open', 'os.listdir', 'os.scandir', 'glob.glob', 'os.walk',
                 'os.listxattr', 'os.getxattr'}
    blocked_modules = {'ctypes', '_ctypes', 'socket', '_socket', 'subprocess',
                       '_posixsubprocess', 'multiprocessing', 'pty', 'mmap',
                       'ssl', '_ssl', 'select', 'selectors', 'asyncio'}
    realpath, join = os.path.realpath, os.path.join
    def inside(path, roots):
        if isinstance(path, int):  # an already open descriptor
            return True
        if isinstance(path, bytes):
            path = path.decode(errors='replace')
        path = realpath(join(workdir, str(path)))
        return any(path == r or path.startswith(r + '/') for r in roots)
    def guard(event, args):
        if event.startswith(blocked_prefixes):
            raise PermissionError(f'sandbox: {event} is not allowed')
        if event == 'import' and args[0].split('.')[0] in blocked_modules:
            raise PermissionError(f'sandbox: import of {args[0]} is not '
                                  'allowed')
        if event in path_events and args:
            writing = event not in read_only or (
                event == 'open' and len(args) > 1 and isinstance(args[1], str)
                and any(c in args[1] for c in 'wax+'))
            if event == 'open' and len(args) > 2 and isinstance(args[2], int):
                writing = writing or bool(args[2] & 0o3)  # O_WRONLY|O_RDWR
            roots = (workdir, ) if writing else (workdir, ) + read_roots
            if not inside(args[0], roots):
                raise PermissionError(f'sandbox: {event} of {args[0]!r} is '
                                      'outside the sandbox')
    return guard
_workdir, _roots, _code = sys.stdin.read().split('\0', 2)
sys.addaudithook(_make_guard(_workdir, tuple(_roots.split('\n'))))
del _make_guard, _roots
exec(compile(_code, '<program>', 'exec'), {'__name__': '__main__'})
'''


@dataclass
class ProgramResult:
    """Outcome of one program: ``ok`` (exited 0 within every limit),
    ``stdout`` (capped, stripped) and ``error`` (why it failed, or '')."""
    ok: bool
    stdout: str
    error: str = ''


def _library_roots():
    paths = sysconfig.get_paths()
    roots = {os.path.realpath(paths[k]) for k in ('stdlib', 'platstdlib',
                                                  'purelib', 'platlib')}
    return sorted(roots)


def _limit_child(memory_bytes, cpu_seconds):
    def apply():
        os.setsid()  # own process group, killed as a whole
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if os.getuid() != 0:  # not enforced for root; the audit hook is
            resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        try:  # no network interfaces at all, where permitted
            ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET)
        except (OSError, AttributeError):
            pass
    return apply


def run_program(code, timeout=5.0, memory_mb=512, max_output=10_000):
    """Run ``code`` sandboxed; see the module docstring."""
    workdir = tempfile.mkdtemp(prefix='pot_')
    try:
        proc = subprocess.Popen(
            [sys.executable, '-I', '-c', _GUARD], cwd=workdir,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={'PATH': '/usr/bin:/bin',
                                         'PYTHONHASHSEED': '0'},
            preexec_fn=_limit_child(memory_mb << 20, int(timeout) + 1))
        payload = '\0'.join([os.path.realpath(workdir),
                             '\n'.join(_library_roots()), code])
        try:
            proc.stdin.write(payload.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        return _collect(proc, timeout, max_output)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _collect(proc, timeout, max_output):
    deadline = time.monotonic() + timeout
    chunks = {proc.stdout: [], proc.stderr: []}
    sizes = {proc.stdout: 0, proc.stderr: 0}
    selector = selectors.DefaultSelector()
    for stream in chunks:
        selector.register(stream, selectors.EVENT_READ)
    failure = ''
    while selector.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            failure = f'timed out after {timeout:g} s'
            break
        for key, _ in selector.select(left):
            data = os.read(key.fileobj.fileno(), 65536)
            if not data:
                selector.unregister(key.fileobj)
                continue
            chunks[key.fileobj].append(data)
            sizes[key.fileobj] += len(data)
        if sizes[proc.stdout] > max_output:
            failure = f'output larger than {max_output} bytes'
            break
    selector.close()
    if failure:
        _kill_group(proc)
    try:
        proc.wait(max(deadline - time.monotonic(), 0) + 1)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        failure = failure or f'timed out after {timeout:g} s'
    for stream in chunks:
        stream.close()
    stdout = b''.join(chunks[proc.stdout])[:max_output].decode(
        errors='replace').strip()
    if not failure and proc.returncode != 0:
        stderr = b''.join(chunks[proc.stderr]).decode(errors='replace')
        last = stderr.strip().splitlines()[-1:] or [
            f'killed by signal {-proc.returncode}'
            if proc.returncode < 0 else f'exit code {proc.returncode}']
        failure = last[0][:300]
    return ProgramResult(ok=not failure, stdout=stdout, error=failure)


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_programs(codes, workers=4, **limits):
    """``run_program`` over ``codes``, ``workers`` at a time (threads that
    each wait on their own child process). Returns results in order."""
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        return list(pool.map(lambda c: run_program(c, **limits), codes))
