"""First code run inside the PoT sandbox, before the untrusted program.

``sandbox.py`` starts this file's source with ``python -I -S -c`` under
bubblewrap (own user, pid, mount, ipc, uts and network namespaces; only the
interpreter and the system libraries bound read-only). It runs as uid 0 of
the sandbox's user namespace with ``CAP_SYS_ADMIN`` and ``CAP_SETFCAP``
there (to mount the work dir, and to map uid 0 of that namespace into a
nested one) and nothing else. It makes itself non-dumpable first (no core
dump, no crash handler ever gets its memory; seccomp later keeps it so), and
then, in this order, before a single line of the program runs:

1. mounts the work dir ``/work``: a tmpfs with a size and an inode cap,
   ``nosuid,nodev,noexec``, and makes it the current directory;
2. moves into a nested user namespace in which it is uid/gid 65534
   (nobody), so the program is never root, not even in its namespace;
3. drops every capability (bounding, ambient, effective, permitted,
   inheritable) and sets the resource limits (address space, CPU, file
   size, open files, threads, queued signals, no core, no mlock, no POSIX
   message queues);
4. restricts itself with Landlock where the kernel has it: read/execute on
   the bound system paths, read/write on ``/work`` only, no TCP, and (ABI 6)
   no signals or abstract sockets outside the sandbox;
5. installs a seccomp allow list (libseccomp): the calls an ordinary
   Python program makes, threads but no processes, no ``PR_SET_DUMPABLE``,
   no pipe growth, no huge or locked pages; every other call (``execve``,
   sockets, namespaces, mounts, ptrace, keyrings, BPF, perf, aio,
   io_uring, inotify, SysV/POSIX IPC, file locks, fsync, ...) fails with
   EPERM;
6. writes ``ready`` to the status descriptor and closes it, then runs the
   program as ``__main__``.

Any failure before step 6 exits with status 125 and one line on stderr; the
caller sees no ``ready`` and reports the program failed, never run (the
self-test of ``sandbox.require`` turns that into a stop: fail closed). The
program's limits are the kernel's from then on: nothing here is a guard the
program could switch off.

The settings arrive on stdin as one ``marshal`` object (version 4, which
every Python 3 reads; ``json`` would cost each run its import), followed by
the program.
This file must run on any Python 3 (it runs on the sandbox's interpreter,
which need not be the caller's) and import only the standard library.
"""
import ctypes
import marshal
import os
import resource
import sys

LIBC = ctypes.CDLL(None, use_errno=True)
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
CLONE_NEWUSER = 0x10000000
CLONE_THREAD = 0x00010000
NOBODY = 65534
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 38, 24, 47
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE = 444, 445
SYS_LANDLOCK_RESTRICT_SELF = 446
SYS_CAPSET = {'x86_64': 126, 'aarch64': 91}

# Landlock filesystem rights, by the ABI that introduced them.
LL_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir
LL_FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1,
                5: (1 << 16) - 1}
LL_WRITE_FILE = 1 << 1
# rights that apply to files (the others only to directories)
LL_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)
LL_NET_TCP = (1 << 0) | (1 << 1)  # bind, connect (ABI 4)
LL_SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets, signals (ABI 6)

# seccomp allow list: every other call fails with EPERM. Nothing here
# allocates a kernel object counted for the whole host or for the caller's
# user (aio contexts, io_uring, inotify instances, keys, message queues,
# SysV/POSIX shared memory, huge pages, locked memory, POSIX timers, queued
# signals, pipe pages beyond the default), and nothing acts on the host
# through the files bound read-only (locks, fsync/msync disk flushes, page
# cache eviction or probing), or outside the sandbox (processes, exec,
# sockets, namespaces, mounts, ptrace, BPF, perf, sync).
ALLOWED_CALLS = (
    # memory (mmap and madvise are allowed below, with some values)
    'brk', 'munmap', 'mremap', 'mprotect',
    # threads, futexes, scheduling of itself
    'exit', 'exit_group', 'set_tid_address', 'set_robust_list', 'rseq',
    'futex', 'sched_yield', 'sched_getaffinity', 'sched_getparam',
    'sched_getscheduler', 'sched_get_priority_max', 'sched_get_priority_min',
    'getcpu', 'restart_syscall',
    # identity, time, limits of itself (prlimit64 below, pid 0 only)
    'getpid', 'getppid', 'gettid', 'getuid', 'geteuid', 'getgid', 'getegid',
    'getresuid', 'getresgid', 'getgroups', 'getpgrp', 'getpgid', 'getsid',
    'getpriority', 'getrusage', 'times', 'uname', 'sysinfo', 'getrandom',
    'getrlimit', 'setrlimit', 'umask', 'clock_gettime', 'clock_getres',
    'clock_nanosleep', 'nanosleep', 'gettimeofday', 'time',
    # signals inside the sandbox
    'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'rt_sigsuspend',
    'rt_sigpending', 'rt_sigtimedwait', 'sigaltstack', 'kill', 'tgkill',
    'tkill', 'alarm', 'setitimer', 'getitimer', 'pause',
    # files (Landlock and the mounts decide which)
    'read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'preadv',
    'pwritev', 'preadv2', 'pwritev2', 'open', 'openat', 'creat', 'close',
    'close_range', 'stat', 'fstat', 'lstat', 'newfstatat', 'statx', 'statfs',
    'fstatfs', 'lseek', 'access', 'faccessat', 'faccessat2', 'getdents',
    'getdents64', 'readlink', 'readlinkat', 'getcwd', 'chdir', 'fchdir',
    'mkdir', 'mkdirat', 'rmdir', 'unlink', 'unlinkat', 'rename', 'renameat',
    'renameat2', 'link', 'linkat', 'symlink', 'symlinkat', 'chmod', 'fchmod',
    'fchmodat', 'fchmodat2', 'truncate', 'ftruncate', 'fallocate', 'utime',
    'utimes', 'utimensat', 'futimesat', 'dup', 'dup2', 'dup3', 'sendfile',
    'copy_file_range', 'getxattr', 'lgetxattr', 'fgetxattr', 'listxattr',
    'llistxattr', 'flistxattr',
    # pipes (as many as RLIMIT_NOFILE allows, default size) and waiting
    'pipe', 'select', 'pselect6', 'poll', 'ppoll', 'epoll_create',
    'epoll_create1', 'epoll_ctl', 'epoll_wait', 'epoll_pwait',
    'epoll_pwait2')
# calls allowed only with these values of one argument: (index, values)
ALLOWED_ARGUMENTS = {
    # dup, get/set descriptor and status flags, F_DUPFD_CLOEXEC,
    # F_GETPIPE_SZ: no F_SETPIPE_SZ (pipe pages are counted per user), no
    # locks (they reach the host's files), leases or dnotify
    'fcntl': (1, (0, 1, 2, 3, 4, 1030, 1032)),
    # TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIONCLEX, FIOCLEX
    'ioctl': (1, (0x5401, 0x5413, 0x541B, 0x5421, 0x5450, 0x5451)),
    # PR_GET_DUMPABLE, PR_SET_NAME, PR_GET_NAME, PR_GET_SECCOMP,
    # PR_CAPBSET_READ, PR_GET_NO_NEW_PRIVS, PR_SET_VMA (no PR_SET_DUMPABLE)
    'prctl': (0, (3, 15, 16, 21, 23, 39, 0x53564D41)),
    'prlimit64': (0, (0,)),  # its own limits only
    # advice for its own memory: no KSM merging (host-wide scanning), no
    # page-out or cold marking, no poisoning
    'madvise': (2, (0, 1, 2, 3, 4, 8, 9, 10, 11, 14, 15, 16, 17, 18, 19,
                    22, 23)),
}
MAP_LOCKED, MAP_HUGETLB = 0x2000, 0x40000
O_NOTIFICATION_PIPE = 0x80  # a watch-queue pipe (O_EXCL)
# namespace flags that clone must not carry (threads only, never these)
CLONE_NEW_ANY = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000
                 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080)


class SetupError(Exception):
    """A step of the set-up failed; the program must not run."""


def check(result, what):
    if result < 0:
        errno = ctypes.get_errno()
        raise SetupError(f'{what}: {os.strerror(errno)} (errno {errno})')
    return result


def mount_work_dir(size_bytes, inodes):
    options = f'size={size_bytes},nr_inodes={inodes},mode=0700'.encode()
    check(LIBC.mount(b'tmpfs', b'/work', b'tmpfs',
                     MS_NOSUID | MS_NODEV | MS_NOEXEC, options),
          'mount the /work tmpfs')
    os.chdir('/work')


def become_nobody():
    """A nested user namespace mapping only our uid/gid, to 65534."""
    check(LIBC.unshare(CLONE_NEWUSER), 'unshare a nested user namespace')
    for name, text in (('setgroups', 'deny'), ('uid_map', f'{NOBODY} 0 1'),
                       ('gid_map', f'{NOBODY} 0 1')):
        with open(f'/proc/self/{name}', 'w') as f:
            f.write(text)
    if os.getuid() != NOBODY or os.getgid() != NOBODY:
        raise SetupError(f'uid/gid is {os.getuid()}/{os.getgid()}, expected '
                         f'{NOBODY}')


def drop_capabilities():
    cap = 0
    while LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    check(LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
          'clear ambient capabilities')
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2
    machine = os.uname().machine
    if machine not in SYS_CAPSET:
        raise SetupError(f'capset: unknown architecture {machine}')
    check(LIBC.syscall(SYS_CAPSET[machine], header, data), 'capset')
    check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 'no_new_privs')
    with open('/proc/self/status') as f:
        effective = [line for line in f if line.startswith('CapEff:')]
    if int(effective[0].split()[1], 16) != 0:
        raise SetupError('capabilities are still effective')


def landlock(read_paths, write_paths):
    """Apply Landlock; returns its ABI version (0 where the kernel has
    none)."""
    syscall = LIBC.syscall
    syscall.restype = ctypes.c_long
    abi = syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                  ctypes.c_uint32(1))
    if abi < 1:
        return 0
    fs_rights = LL_FS_RIGHTS[max(v for v in LL_FS_RIGHTS if v <= abi)]
    attr = (ctypes.c_uint64 * 3)(fs_rights, LL_NET_TCP if abi >= 4 else 0,
                                 LL_SCOPE_ALL if abi >= 6 else 0)
    size = 8 * (3 if abi >= 6 else 2 if abi >= 4 else 1)
    ruleset = check(syscall(SYS_LANDLOCK_CREATE_RULESET, attr,
                            ctypes.c_size_t(size), ctypes.c_uint32(0)),
                    'landlock_create_ruleset')

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [('allowed_access', ctypes.c_uint64),
                    ('parent_fd', ctypes.c_int32)]

    rules = [(p, LL_READ) for p in read_paths]
    rules += [(p, fs_rights) for p in write_paths]
    rules.append(('/dev/null', LL_READ | LL_WRITE_FILE))
    for path, access in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        if not os.path.isdir(path):
            access &= LL_FILE_RIGHTS
        rule = PathBeneath(access & fs_rights, fd)
        check(syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule),
                      0), f'landlock_add_rule {path}')
        os.close(fd)
    check(syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0),
          'landlock_restrict_self')
    os.close(ruleset)
    return abi


class ArgCmp(ctypes.Structure):
    """libseccomp's ``struct scmp_arg_cmp``."""
    _fields_ = [('arg', ctypes.c_uint), ('op', ctypes.c_int),
                ('datum_a', ctypes.c_uint64), ('datum_b', ctypes.c_uint64)]


SCMP_ACT_ERRNO, SCMP_ACT_ALLOW = 0x00050000, 0x7fff0000
SCMP_CMP_EQ, SCMP_CMP_MASKED_EQ = 4, 7
EPERM, ENOSYS = 1, 38


def load_libseccomp(library_path):
    """libseccomp through ctypes, with the signatures we call."""
    lib = ctypes.CDLL(library_path, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                     ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def seccomp(library_path):
    """Install the allow list (:data:`ALLOWED_CALLS`,
    :data:`ALLOWED_ARGUMENTS`); any other call fails with EPERM. ``clone``
    only makes threads; ``clone3`` answers ENOSYS, so glibc falls back to
    ``clone``."""
    lib = load_libseccomp(library_path)
    ctx = lib.seccomp_init(SCMP_ACT_ERRNO | EPERM)
    if not ctx:
        raise SetupError('seccomp_init failed')

    def rule(action, name, *conditions):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # not a call on this architecture
            return
        check(lib.seccomp_rule_add(ctx, action, number, len(conditions),
                                   *conditions), f'seccomp rule for {name}')

    for name in ALLOWED_CALLS:
        rule(SCMP_ACT_ALLOW, name)
    for name, (arg, values) in ALLOWED_ARGUMENTS.items():
        for value in values:
            rule(SCMP_ACT_ALLOW, name, ArgCmp(arg, SCMP_CMP_EQ, value, 0))
    rule(SCMP_ACT_ALLOW, 'mmap', ArgCmp(3, SCMP_CMP_MASKED_EQ,
                                        MAP_LOCKED | MAP_HUGETLB, 0))
    rule(SCMP_ACT_ALLOW, 'pipe2', ArgCmp(1, SCMP_CMP_MASKED_EQ,
                                         O_NOTIFICATION_PIPE, 0))
    rule(SCMP_ACT_ALLOW, 'clone', ArgCmp(0, SCMP_CMP_MASKED_EQ,
                                         CLONE_THREAD | CLONE_NEW_ANY,
                                         CLONE_THREAD))
    rule(SCMP_ACT_ERRNO | ENOSYS, 'clone3')
    check(lib.seccomp_load(ctypes.c_void_p(ctx)), 'seccomp_load')
    lib.seccomp_release(ctypes.c_void_p(ctx))


def no_core_dumps():
    """Make the process non-dumpable: no core file and no crash handler
    (not even a piped ``core_pattern``, which ignores RLIMIT_CORE) ever gets
    its memory; the seccomp filter then keeps PR_SET_DUMPABLE out of
    reach."""
    check(LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), 'PR_SET_DUMPABLE')
    if LIBC.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise SetupError('the process is still dumpable')


def set_limits(rlimits):
    """``{'AS': bytes, 'CPU': seconds, ...}`` as hard and soft limits."""
    for name, value in rlimits.items():
        resource.setrlimit(getattr(resource, f'RLIMIT_{name}'), (value, value))


def set_up():
    """Steps 1-5 (the module docstring); returns the settings and the
    program. Not even a crash in here dumps core: the process is made
    non-dumpable first."""
    no_core_dumps()
    settings = marshal.load(sys.stdin.buffer)
    code = sys.stdin.buffer.read().decode('utf-8', errors='replace')
    sys.stdin.close()
    mount_work_dir(settings['work_bytes'], settings['work_inodes'])
    become_nobody()
    drop_capabilities()
    set_limits(settings['rlimits'])
    landlock(settings['read_paths'], ['/work'])
    seccomp(settings['libseccomp'])
    return settings, code


def main():
    """Set up (exit 125 with one line if any step fails), say ``ready``;
    returns the program."""
    try:
        settings, code = set_up()
    except (SetupError, OSError, KeyError, ValueError, EOFError) as err:
        print(f'sandbox setup failed: {err}', file=sys.stderr)
        sys.stderr.flush()
        os._exit(125)
    os.write(settings['status_fd'], b'ready')
    os.close(settings['status_fd'])
    return code


exec(compile(main(), '<program>', 'exec'), {'__name__': '__main__'})
