"""Run untrusted program-of-thought code in a kernel-enforced sandbox.

Every program runs in a fresh Python under `bubblewrap
<https://github.com/containers/bubblewrap>`_, the sandbox Flatpak uses; the
isolation is set up by the kernel from outside the program, so nothing in
the program's own interpreter is a guard it could switch off:

- own user, pid, mount, ipc, uts and network namespaces (no network at all);
  inside, the program is uid/gid 65534 (nobody) with no capabilities; a
  root caller also starts it under an unused host uid (as ``isolate`` does),
  never as root;
- a read-only view of only the interpreter, its standard library and the
  system libraries; no ``/etc``, home, project, data or labels, no host
  ``/tmp``; ``/dev`` holds only the standard devices and is read-only (no
  ``/dev/shm``);
- ``/work``, the current directory: an empty tmpfs of ``work_mb`` and
  ``work_inodes``, ``noexec``; it vanishes with the mount namespace, so
  nothing is left on disk;
- limits on address space, CPU time, file size, open files, threads and
  queued signals; no core dump (the process is non-dumpable, so not even a
  crash handler piped from ``core_pattern`` gets its memory); a seccomp
  allow list of the calls ordinary Python programs make (threads but no
  processes, no ``execve``, sockets, namespaces, mounts, ptrace, keyrings,
  BPF, perf, aio, io_uring, inotify, SysV/POSIX IPC, huge or locked pages,
  pipe growth, file locks or fsync): no kernel object counted for the whole
  host or for the caller's user; Landlock, where the kernel has it,
  confines file access to the bound paths, forbids TCP and (ABI 6) signals
  and abstract sockets outside;
- the caller reads stdout and stderr with a bound each (a flood is cut and
  the program killed) and a wall-clock deadline; at the end the sandbox's
  pid 1 is killed, which kills everything started inside, and the call
  returns only once it is gone. That holds for every way the call ends: a
  result, a failure of the caller's own (out of descriptors or processes),
  an interruption (Ctrl-C, an alarm, an exception raised into its thread).

The in-sandbox set-up steps are in ``sandbox_init.py``. Where the isolation
cannot be set up (no ``bwrap``, user namespaces disabled, no libseccomp, an
interpreter the sandbox uid cannot read), :func:`require` raises
:class:`SandboxUnavailable` with one line saying what is missing: programs
never run unconfined. Once it has passed, a sandbox that fails to start or
run fails its own program only (a :class:`ProgramResult` saying why).

``run_program(code)`` returns a :class:`ProgramResult`; ``run_programs``
runs many, ``workers`` at a time, each in its own sandbox.
"""
import itertools
import json
import marshal
import os
import os.path as osp
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

INIT_SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'sandbox_init.py')
INSTALL_HINT = ('install bubblewrap (Debian/Ubuntu: `apt-get install '
                'bubblewrap`; tools/setup_env.sh does it)')
UID_BASE, UID_COUNT = 61000, 1000  # host uids for programs of a root caller
MAX_CODE_BYTES = 512 * 1024
LIBRARY_DIRS = ('/usr/lib', '/usr/lib64', '/lib', '/lib64', '/lib32',
                '/usr/lib32')
SECCOMP_LIBRARY = 'libseccomp.so.2'
PENDING_SIGNALS = 64  # RLIMIT_SIGPENDING: queued signals count per user
POLL_SECONDS = 0.1  # how soon a running sandbox notices a cancel
KILL_WAIT_SECONDS = 10  # for a killed sandbox to go before bwrap is killed
STOPPED = 'stopped: the caller was interrupted'


class SandboxUnavailable(RuntimeError):
    """The isolation cannot be set up here; the message is one line saying
    what is missing and how to get it."""


@dataclass
class ProgramResult:
    """Outcome of one program: ``ok`` (exited 0 within every limit),
    ``stdout`` (capped, stripped) and ``error`` (why it failed, or '')."""
    ok: bool
    stdout: str
    error: str = ''


@dataclass(frozen=True)
class Limits:
    """What one program may use. Sizes in MiB; ``processes`` counts the
    threads of the program (it cannot start processes)."""
    timeout: float = 5.0
    memory_mb: int = 512
    max_output: int = 10_000
    max_stderr: int = 64_000
    work_mb: int = 16
    work_inodes: int = 256
    file_mb: int = 8
    open_files: int = 64
    processes: int = 32


def _interpreter_layout(python):
    """Paths the interpreter ``python`` needs, asked of it (a trusted,
    unconfined run of our own code)."""
    probe = ('import json, sys, sysconfig\n'
             'v = sysconfig.get_config_vars()\n'
             'print(json.dumps({"executable": sys.executable,\n'
             '  "stdlib": sysconfig.get_paths()["stdlib"],\n'
             '  "platstdlib": sysconfig.get_paths()["platstdlib"],\n'
             '  "libpython": v.get("LDLIBRARY") if v.get("Py_ENABLE_SHARED")'
             ' else None, "libdir": v.get("LIBDIR")}))\n')
    try:
        out = subprocess.run([python, '-I', '-S', '-c', probe],
                             capture_output=True, text=True, timeout=30,
                             env={}, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise SandboxUnavailable(f'cannot run the sandbox interpreter '
                                 f'{python}: {err}') from None
    layout = json.loads(out)
    files = [osp.realpath(layout['executable'])]
    if layout['libpython']:
        files.append(osp.realpath(osp.join(layout['libdir'],
                                           layout['libpython'])))
    dirs = sorted({osp.realpath(layout[k]) for k in ('stdlib', 'platstdlib')})
    return files[0], files, dirs


def _world_readable(path):
    """Can a uid other than the owner reach and read ``path``?"""
    path = osp.realpath(path)
    parts = path.split('/')
    for i in range(2, len(parts)):
        if not os.stat('/'.join(parts[:i])).st_mode & 0o001:
            return False
    return bool(os.stat(path).st_mode & 0o004)


def _find_library(name):
    for folder in ('/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu',
                   '/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu',
                   '/usr/lib64', '/usr/lib', '/lib64', '/lib'):
        if osp.isfile(osp.join(folder, name)):
            return osp.realpath(osp.join(folder, name))
    return None


class Sandbox:
    """The bubblewrap command line for this machine, and running a program
    in it (:meth:`run`). Build it with :meth:`detect`."""

    def __init__(self, bwrap, python, read_paths, libseccomp, drop_uid):
        self.bwrap, self.python = bwrap, python
        self.read_paths, self.libseccomp = read_paths, libseccomp
        self.drop_uid = drop_uid
        with open(INIT_SOURCE) as f:
            self.init_source = f.read()
        self._uids = itertools.count()

    @classmethod
    def detect(cls):
        """Find bwrap, an interpreter the sandbox uid can read and
        libseccomp; raises :class:`SandboxUnavailable` naming what is
        missing."""
        bwrap = shutil.which('bwrap')
        if bwrap is None:
            raise SandboxUnavailable(
                f'PoT needs a sandbox and bubblewrap (bwrap) is not '
                f'installed: {INSTALL_HINT}')
        libseccomp = _find_library(SECCOMP_LIBRARY)
        if libseccomp is None:
            raise SandboxUnavailable(
                'PoT needs libseccomp (seccomp filter) and it is not '
                'installed: apt-get install libseccomp2')
        drop_uid = os.getuid() == 0
        chosen = os.environ.get('CHARTMOE_SANDBOX_PYTHON')
        candidates = [chosen] if chosen else [
            getattr(sys, '_base_executable', sys.executable),
            '/usr/bin/python3']
        for python in candidates:
            if not osp.isfile(python):
                continue
            executable, files, dirs = _interpreter_layout(python)
            if not drop_uid or all(map(_world_readable, files + dirs)):
                break
        else:
            raise SandboxUnavailable(
                'PoT needs a Python interpreter that the sandbox uid can read'
                f' (tried {", ".join(filter(None, candidates))}): install '
                'python3 or set CHARTMOE_SANDBOX_PYTHON')
        libraries = [d for d in LIBRARY_DIRS if osp.exists(d)]
        inside = lambda p: any(p == d or p.startswith(d + '/')
                               for d in libraries)
        read_paths = libraries + [p for p in files + dirs if not inside(p)]
        return cls(bwrap, executable, read_paths, libseccomp, drop_uid)

    def command(self, status_fd, info_fd, block_fd):
        """bwrap's argument list (see the module docstring)."""
        cmd = [self.bwrap, '--unshare-all', '--die-with-parent',
               '--new-session', '--as-pid-1', '--hostname', 'pot', '--uid', '0', '--gid',
               '0', '--cap-add', 'CAP_SYS_ADMIN', '--cap-add', 'CAP_SETFCAP',
               '--clearenv']
        for name, value in (('PATH', '/usr/bin:/bin'), ('HOME', '/work'),
                            ('TMPDIR', '/work'), ('LANG', 'C.UTF-8'),
                            ('PYTHONHASHSEED', '0'),
                            ('PYTHONDONTWRITEBYTECODE', '1')):
            cmd += ['--setenv', name, value]
        for path in self.read_paths:
            if osp.islink(path) and path in LIBRARY_DIRS:
                cmd += ['--symlink', os.readlink(path), path]
            else:
                cmd += ['--ro-bind', path, path]
        cmd += ['--proc', '/proc', '--dev', '/dev', '--remount-ro', '/dev',
                '--dir', '/work', '--remount-ro', '/', '--chdir', '/',
                '--info-fd', str(info_fd), '--block-fd', str(block_fd),
                self.python, '-I', '-S', '-c', self.init_source]
        return cmd

    def settings(self, status_fd, limits):
        """What ``sandbox_init`` sets up, sent ahead of the program."""
        return {
            'status_fd': status_fd, 'work_bytes': limits.work_mb << 20,
            'work_inodes': limits.work_inodes, 'libseccomp': self.libseccomp,
            'read_paths': [p for p in self.read_paths if not osp.islink(p)]
            + ['/proc', '/dev/urandom', '/dev/zero'],
            'rlimits': {
                'AS': limits.memory_mb << 20, 'CPU': int(limits.timeout) + 1,
                'FSIZE': limits.file_mb << 20, 'NOFILE': limits.open_files,
                'NPROC': limits.processes, 'SIGPENDING': PENDING_SIGNALS,
                'CORE': 0, 'MEMLOCK': 0, 'MSGQUEUE': 0, 'NICE': 0,
                'RTPRIO': 0}}

    def host_user(self):
        """``Popen`` arguments that start bwrap under an unused host uid
        (root caller), or none (the caller's own uid)."""
        if not self.drop_uid:
            return {}
        uid = UID_BASE + next(self._uids) % UID_COUNT
        return dict(user=uid, group=uid, extra_groups=[])

    def run(self, code, limits=Limits(), cancel=None):
        """Run ``code``; returns a :class:`ProgramResult`. A sandbox that
        cannot be set up or run (a kernel refusal, the caller out of
        descriptors or processes) fails this program only. ``cancel``: an
        object whose ``stopped`` attribute, once true, stops the program
        (a :class:`_Batch`). However the call ends (a result, an exception,
        an interruption), the sandbox and everything in it are killed and
        reaped first."""
        payload = code.encode('utf-8', errors='replace')
        if len(payload) > MAX_CODE_BYTES:
            return ProgramResult(False, '', f'program larger than '
                                 f'{MAX_CODE_BYTES} bytes')
        run = _Run(limits, cancel)
        try:
            status_fd = run.start(self.command, self.host_user())
            settings = marshal.dumps(self.settings(status_fd, limits), 4)
            return run.collect(settings + payload)
        except OSError as err:
            if err.errno is None:  # the caller's own (an alarm's timeout)
                raise
            return ProgramResult(False, '', f'sandbox failed: '
                                 f'{type(err).__name__}: {err}')
        finally:
            _uninterrupted(run.stop)


def _uninterrupted(step):
    """Run ``step`` to its end even if an exception interrupts it (Ctrl-C,
    an alarm's handler, an asynchronous exception); re-raise the first such
    exception once ``step`` is done. ``step`` must be safe to repeat."""
    interruption = None
    while True:
        try:
            step()
            break
        except BaseException as err:  # noqa: B902 -- finish, then re-raise
            interruption = interruption or err
    if interruption is not None:
        raise interruption


class _Run:
    """One sandbox: starts bwrap, feeds it the program, reads it within the
    limits, and kills and reaps it (:meth:`stop`, safe to repeat)."""

    def __init__(self, limits, cancel):
        self.limits, self.cancel = limits, cancel
        self.proc = self.pidfd = self.pid1 = self.feed = None
        self.fds = {}  # our ends: we read status and info, write block
        self.info = bytearray()
        self.data = {}  # what each descriptor has given so far

    def start(self, command, user):
        """Start bwrap (blocked before the sandbox runs anything); returns
        the status descriptor's number as the sandbox sees it."""
        theirs = {}
        try:
            for name in ('status', 'info', 'block'):
                read_end, write_end = os.pipe()
                mine, theirs[name] = ((read_end, write_end) if name != 'block'
                                      else (write_end, read_end))
                self.fds[name] = mine
            self.proc = subprocess.Popen(
                command(theirs['status'], theirs['info'], theirs['block']),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, pass_fds=tuple(theirs.values()),
                start_new_session=True, **user)
        finally:
            for fd in theirs.values():
                os.close(fd)
        return theirs['status']

    def collect(self, stdin_bytes):
        """Feed ``stdin_bytes`` once bwrap has said who its pid 1 is, and
        read stdout, stderr and the status until the program ends, a limit
        is hit or ``cancel`` is set; then stop the sandbox and judge."""
        proc, status = self.proc, self.fds['status']
        deadline = time.monotonic() + self.limits.timeout
        self.data = {proc.stdout: bytearray(), proc.stderr: bytearray(),
                     status: bytearray(), self.fds['info']: self.info}
        self.feed = _Feed(proc.stdin, stdin_bytes)
        failure = ''
        with selectors.DefaultSelector() as selector:
            for stream in self.data:
                selector.register(stream, selectors.EVENT_READ)
            while selector.get_map() and not failure:
                left = deadline - time.monotonic()
                if left <= 0:
                    failure = f'timed out after {self.limits.timeout:g} s'
                elif self.cancel is not None and self.cancel.stopped:
                    failure = STOPPED
                else:
                    failure = self._pump(selector, min(left, POLL_SECONDS))
        self.stop()
        return self._judge(failure, bytes(self.data[status]),
                           bytes(self.data[proc.stdout]),
                           bytes(self.data[proc.stderr]))

    def _pump(self, selector, timeout):
        """Handle what is ready within ``timeout``; returns a failure (an
        output over its cap) or ''."""
        proc = self.proc
        caps = {proc.stdout: ('stdout', self.limits.max_output),
                proc.stderr: ('stderr', self.limits.max_stderr)}
        for key, _ in selector.select(timeout):
            if key.fileobj is proc.stdin:
                self.feed.write(selector)
                continue
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                if key.fileobj is self.fds['info'] and self._release():
                    selector.register(proc.stdin, selectors.EVENT_WRITE)
                continue
            self.data[key.fileobj] += chunk
            name, cap = caps.get(key.fileobj, ('', None))
            if cap is not None and len(self.data[key.fileobj]) > cap:
                return f'output larger than {cap} bytes on {name}'
        return ''

    def _release(self):
        """bwrap told us its pid 1 (blocked until we answer): hold it by a
        pidfd, so that it can be killed without a pid-reuse race, and let it
        go on. False when bwrap ended without starting it."""
        if not self._hold_pid1():
            return False
        os.write(self.fds['block'], b'1')
        return True

    def _hold_pid1(self):
        """Note the sandbox's pid 1 from bwrap's info (as read so far) and
        open a pidfd on it; False when there is none (bwrap ended before,
        or while, telling us)."""
        if self.pidfd is None:
            try:
                self.pid1 = json.loads(self.info.decode())['child-pid']
            except (ValueError, KeyError, TypeError):
                return False
            try:
                self.pidfd = os.pidfd_open(self.pid1)
            except ProcessLookupError:
                return False
        return True

    def _judge(self, failure, status, stdout, stderr):
        """The :class:`ProgramResult` of the ended run."""
        returncode = self.proc.returncode
        stderr = stderr.decode(errors='replace')
        last = stderr.strip().splitlines()[-1:]
        if not failure and status != b'ready':
            failure = 'sandbox could not be set up: ' + (
                last[0][:300] if last else f'exit status {returncode}')
        elif not failure and returncode != 0:
            failure = last[0][:300] if last else (
                f'killed by signal {returncode - 128}' if returncode > 128
                else f'exit code {returncode}')
        stdout = stdout[:self.limits.max_output].decode(
            errors='replace').strip()
        return ProgramResult(ok=not failure, stdout=stdout, error=failure)

    def stop(self):
        """Kill the sandbox's pid 1 (the kernel then kills everything in its
        pid namespace, and the namespaces go with it), wait until it is gone
        and reap bwrap; then close our descriptors. Safe to repeat."""
        if self.proc is not None:
            self._await_pid1()
            self._kill_pid1()
            self._reap_bwrap()
        self._close()

    def _await_pid1(self):
        """If bwrap's word on its pid 1 is still to come, read it (bwrap
        writes it as soon as pid 1 exists, and pid 1 waits for us), so that
        no sandbox started in the meantime is missed."""
        fd = self.fds.get('info')
        if self.pidfd is not None or fd is None:
            return
        os.set_blocking(fd, False)
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        with selectors.DefaultSelector() as poller:
            poller.register(fd, selectors.EVENT_READ)
            while time.monotonic() < deadline and poller.select(
                    deadline - time.monotonic()):
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                self.info += chunk
        try:
            self._hold_pid1()
        except OSError:  # no pidfd: killed by its pid (see _kill_pid1)
            pass

    def _kill_pid1(self):
        """SIGKILL the sandbox's pid 1 and wait until it has exited. Without
        a pidfd (the caller out of descriptors) by its pid, which is safe
        while bwrap lives: pid 1 has not been let go, so it cannot have
        ended and been reaped."""
        if self.pidfd is None:
            if self.pid1 is not None and self.proc.poll() is None:
                try:
                    os.kill(self.pid1, signal.SIGKILL)
                except OSError:  # gone already
                    pass
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except OSError:  # gone already
            pass
        with selectors.DefaultSelector() as poller:
            poller.register(self.pidfd, selectors.EVENT_READ)
            poller.select(KILL_WAIT_SECONDS)  # readable once it has exited

    def _reap_bwrap(self):
        """Wait for bwrap (it exits once its pid 1 has); kill it and its
        process group if it does not."""
        try:
            self.proc.wait(KILL_WAIT_SECONDS)
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.kill()
        self.proc.wait()

    def _close(self):
        """Close our ends of the pipes, each once."""
        for name in list(self.fds):
            os.close(self.fds.pop(name))
        if self.pidfd is not None:
            pidfd, self.pidfd = self.pidfd, None
            os.close(pidfd)
        if self.proc is not None:
            for stream in (self.proc.stdin, self.proc.stdout,
                           self.proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass


class _Feed:
    """The program's stdin, written without blocking as the pipe takes it
    (no pipe growth: pipe pages are counted per user)."""

    def __init__(self, stream, data):
        self.stream, self.data, self.done = stream, memoryview(data), 0
        os.set_blocking(stream.fileno(), False)

    def write(self, selector):
        """Write what the pipe takes; close it when all is written or the
        reader has gone."""
        try:
            self.done += os.write(self.stream.fileno(),
                                  self.data[self.done:self.done + 65536])
        except BlockingIOError:
            return
        except BrokenPipeError:
            self.done = len(self.data)
        if self.done >= len(self.data):
            selector.unregister(self.stream)
            self.stream.close()


_LOCK = threading.Lock()
_SANDBOX = {}


def require():
    """The checked sandbox of this machine: detected once, then proven by
    running a trivial program. Raises :class:`SandboxUnavailable`."""
    with _LOCK:
        if 'error' in _SANDBOX:
            raise SandboxUnavailable(_SANDBOX['error'])
        if 'sandbox' not in _SANDBOX:
            try:
                sandbox = Sandbox.detect()
                result = _run_all(sandbox, ['print(6 * 7)'], 1, Limits())[0]
                if result.stdout != '42':
                    raise SandboxUnavailable(
                        f'PoT sandbox self-test failed: {result.error or result.stdout!r}')
            except SandboxUnavailable as err:
                _SANDBOX['error'] = str(err)
                raise
            _SANDBOX['sandbox'] = sandbox
        return _SANDBOX['sandbox']


def run_program(code, timeout=5.0, memory_mb=512, max_output=10_000,
                **limits):
    """Run ``code`` in the sandbox; see the module docstring and
    :class:`Limits` for the other limits, and :func:`run_programs` for an
    interrupted call."""
    return _run_all(require(), [code], 1, Limits(
        timeout=timeout, memory_mb=memory_mb, max_output=max_output,
        **limits))[0]


def run_programs(codes, workers=4, **limits):
    """``run_program`` over ``codes``, ``workers`` at a time (threads that
    each wait on their own sandbox). Returns results in order. If the call
    is interrupted (Ctrl-C, an alarm's handler, an exception raised into
    the calling thread), the programs not started are dropped and the
    running ones are stopped, killed and reaped before the exception goes
    on."""
    return _run_all(require(), codes, workers, Limits(**limits))


def _run_all(sandbox, codes, workers, limits):
    """Run ``codes`` in ``sandbox`` on worker threads, which no signal
    handler interrupts (Python runs those on the main thread), so that
    starting and killing a sandbox is never cut short; the calling thread
    only waits, and cancels them all if it is interrupted."""
    batch = _Batch()
    pool = ThreadPoolExecutor(max(workers, 1))
    try:
        futures = [pool.submit(batch.run, sandbox, code, limits)
                   for code in codes]
        return [_result(future) for future in futures]
    finally:
        batch.stopped = True  # first, in one step no signal handler splits
        _uninterrupted(lambda: batch.close(pool))


class _Batch:
    """The sandboxes of one call. ``stopped``, once true, stops the running
    ones and starts no more; it is a plain attribute, so setting it is one
    bytecode, which no signal handler can cut short. Each sandbox is
    counted while it runs, so that :meth:`close` can wait for the last one
    even if a worker thread escaped the pool's own bookkeeping (a signal
    while the pool was starting it)."""

    def __init__(self):
        self.stopped = False
        self.running = 0
        self.changed = threading.Condition()

    def run(self, sandbox, code, limits):
        """``sandbox.run(code, limits)``, unless the batch is stopped."""
        with self.changed:
            if self.stopped:
                return ProgramResult(False, '', STOPPED)
            self.running += 1
        try:
            return sandbox.run(code, limits, self)
        finally:
            with self.changed:
                self.running -= 1
                self.changed.notify_all()

    def close(self, pool):
        """Stop the batch, drop the programs not started, and wait for the
        pool's threads and for the last sandbox to be gone."""
        self.stopped = True
        pool.shutdown(wait=True, cancel_futures=True)
        with self.changed:
            self.changed.wait_for(lambda: self.running == 0)


def _result(future):
    """``future.result()``, waited for in short steps: a signal the kernel
    hands to another thread still interrupts the caller within a step."""
    while not wait([future], timeout=POLL_SECONDS).done:
        pass
    return future.result()
