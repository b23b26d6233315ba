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
- limits on address space, CPU time, file size, open files and processes;
  seccomp forbids new processes (threads only), ``execve``,
  ``memfd_create``, sockets, SysV/POSIX shared memory and message queues,
  and the namespace, mount, ptrace, keyring, BPF and io_uring calls;
  Landlock, where the kernel has it, confines file access to the bound
  paths, forbids TCP and (ABI 6) signals and abstract sockets outside;
- the caller reads stdout and stderr with a bound each (a flood is cut and
  the program killed) and a wall-clock deadline; at the end the sandbox's
  pid 1 is killed, which kills everything started inside, and the call
  returns only once it is gone.

The in-sandbox set-up steps are in ``sandbox_init.py``. Where the isolation
cannot be set up (no ``bwrap``, user namespaces disabled, no libseccomp, an
interpreter the sandbox uid cannot read), :func:`require` and every run
raise :class:`SandboxUnavailable` with one line saying what is missing:
programs never run unconfined.

``run_program(code)`` returns a :class:`ProgramResult`; ``run_programs``
runs many, ``workers`` at a time, each in its own sandbox.
"""
import fcntl
import itertools
import json
import os
import os.path as osp
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

INIT_SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'sandbox_init.py')
INSTALL_HINT = ('install bubblewrap (Debian/Ubuntu: `apt-get install '
                'bubblewrap`; tools/setup_env.sh does it)')
SETUP_FAILED = 125  # sandbox_init's exit status when a set-up step fails
UID_BASE, UID_COUNT = 61000, 1000  # host uids for programs of a root caller
MAX_CODE_BYTES = 512 * 1024
LIBRARY_DIRS = ('/usr/lib', '/usr/lib64', '/lib', '/lib64', '/lib32',
                '/usr/lib32')
SECCOMP_LIBRARY = 'libseccomp.so.2'


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

    def run(self, code, limits=Limits()):
        """Run ``code``; returns a :class:`ProgramResult`. Raises
        :class:`SandboxUnavailable` when the sandbox could not be set up."""
        payload = code.encode('utf-8', errors='replace')
        if len(payload) > MAX_CODE_BYTES:
            return ProgramResult(False, '', f'program larger than '
                                 f'{MAX_CODE_BYTES} bytes')
        status_r, status_w = os.pipe()
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        settings = {
            'status_fd': status_w, 'work_bytes': limits.work_mb << 20,
            'work_inodes': limits.work_inodes, 'libseccomp': self.libseccomp,
            'read_paths': [p for p in self.read_paths if not osp.islink(p)]
            + ['/proc', '/dev/urandom', '/dev/zero'],
            'rlimits': {
                'AS': limits.memory_mb << 20, 'CPU': int(limits.timeout) + 1,
                'FSIZE': limits.file_mb << 20, 'NOFILE': limits.open_files,
                'NPROC': limits.processes, 'CORE': 0, 'MEMLOCK': 0,
                'MSGQUEUE': 0, 'NICE': 0, 'RTPRIO': 0}}
        user = {}
        if self.drop_uid:
            uid = UID_BASE + next(self._uids) % UID_COUNT
            user = dict(user=uid, group=uid, extra_groups=[])
        try:
            proc = subprocess.Popen(
                self.command(status_w, info_w, block_r),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, pass_fds=(status_w, info_w, block_r),
                start_new_session=True, **user)
        except OSError as err:
            for fd in (status_r, status_w, info_r, info_w, block_r, block_w):
                os.close(fd)
            raise SandboxUnavailable(f'cannot start bwrap: {err}') from None
        for fd in (status_w, info_w, block_r):
            os.close(fd)
        run = _Run(proc, status_r, info_r, block_w, limits)
        try:
            fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ,
                        max(len(payload) + 4096, 65536))
            return run.collect(json.dumps(settings).encode() + b'\n' + payload)
        finally:
            run.close()


class _Run:
    """One started sandbox: feeds it, reads it within the limits, and
    kills and reaps it."""

    def __init__(self, proc, status_fd, info_fd, block_fd, limits):
        self.proc, self.limits = proc, limits
        self.status_fd, self.info_fd, self.block_fd = (status_fd, info_fd,
                                                       block_fd)
        self.pidfd = None

    def _release(self, info):
        """bwrap told us its pid 1 (blocked until we answer): hold it by a
        pidfd, so that it can be killed without a pid-reuse race."""
        child = json.loads(info.decode())['child-pid']
        self.pidfd = os.pidfd_open(child)
        os.write(self.block_fd, b'1')

    def collect(self, stdin_bytes):
        limits, proc = self.limits, self.proc
        deadline = time.monotonic() + limits.timeout
        caps = {proc.stdout: limits.max_output, proc.stderr: limits.max_stderr}
        data = {proc.stdout: bytearray(), proc.stderr: bytearray(),
                self.status_fd: bytearray(), self.info_fd: bytearray()}
        selector = selectors.DefaultSelector()
        for stream in data:
            selector.register(stream, selectors.EVENT_READ)
        failure = ''
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                failure = f'timed out after {limits.timeout:g} s'
                break
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    if key.fileobj is self.info_fd:
                        self._release(data[self.info_fd])
                        proc.stdin.write(stdin_bytes)
                        proc.stdin.close()
                    continue
                data[key.fileobj] += chunk
                if key.fileobj in caps and len(data[key.fileobj]) > caps[
                        key.fileobj]:
                    failure = (f'output larger than {caps[key.fileobj]} bytes'
                               f' on {key.fileobj is proc.stdout and "stdout" or "stderr"}')
            if failure:
                break
        selector.close()
        self.kill()
        ready = bytes(data[self.status_fd]) == b'ready'
        stderr = bytes(data[proc.stderr]).decode(errors='replace')
        if not ready and not failure:
            last = stderr.strip().splitlines()[-1:] or [
                f'exit status {proc.returncode}']
            raise SandboxUnavailable(f'PoT sandbox could not be set up: '
                                     f'{last[0][:300]}')
        stdout = bytes(data[proc.stdout][:limits.max_output]).decode(
            errors='replace').strip()
        if not failure and proc.returncode != 0:
            last = stderr.strip().splitlines()[-1:] or [
                f'killed by signal {proc.returncode - 128}'
                if proc.returncode > 128 else f'exit code {proc.returncode}']
            failure = last[0][:300]
        return ProgramResult(ok=not failure, stdout=stdout, error=failure)

    def kill(self):
        """Kill the sandbox's pid 1 (the kernel then kills everything in its
        pid namespace) and wait until it is gone; bwrap then reaps it and
        exits (killed too if it does not)."""
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            poller = selectors.DefaultSelector()
            poller.register(self.pidfd, selectors.EVENT_READ)
            poller.select(10)  # readable once the process has exited
            poller.close()
            try:
                self.proc.wait(10)
                return
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def close(self):
        for fd in (self.pidfd, self.status_fd, self.info_fd, self.block_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


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
                result = sandbox.run('print(6 * 7)')
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
    :class:`Limits` for the other limits."""
    return require().run(code, Limits(timeout=timeout, memory_mb=memory_mb,
                                      max_output=max_output, **limits))


def run_programs(codes, workers=4, **limits):
    """``run_program`` over ``codes``, ``workers`` at a time (threads that
    each wait on their own sandbox). Returns results in order."""
    require()
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        return list(pool.map(lambda c: run_program(c, **limits), codes))
