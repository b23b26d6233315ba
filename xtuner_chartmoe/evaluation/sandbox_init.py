"""First code run inside the PoT sandbox, before the untrusted program.

``sandbox.py`` starts this file's source with ``python -I -S -c`` under
bubblewrap (own user, pid, mount, ipc, uts and network namespaces; only the
interpreter and the system libraries bound read-only). It runs as uid 0 of
the sandbox's user namespace with ``CAP_SYS_ADMIN`` and ``CAP_SETFCAP``
there (to mount the work dir, and to map uid 0 of that namespace into a
nested one) and nothing else, and then, in this order, before a single line of the program runs:

1. mounts the work dir ``/work``: a tmpfs with a size and an inode cap,
   ``nosuid,nodev,noexec``, and makes it the current directory;
2. moves into a nested user namespace in which it is uid/gid 65534
   (nobody), so the program is never root, not even in its namespace;
3. drops every capability (bounding, ambient, effective, permitted,
   inheritable) and sets the resource limits (address space, CPU, file
   size, open files, processes of this namespace, no core, no mlock);
4. restricts itself with Landlock where the kernel has it: read/execute on
   the bound system paths, read/write on ``/work`` only, no TCP, and (ABI 6)
   no signals or abstract sockets outside the sandbox;
5. installs a seccomp filter (libseccomp): no new processes (threads only),
   no ``execve``, no ``memfd_create``, no sockets, no namespace, mount,
   ptrace, keyring, BPF, perf or io_uring calls;
6. writes ``ready`` to the status descriptor and closes it, then runs the
   program as ``__main__``.

Any failure before step 6 exits with status 125 and one line on stderr; the
caller sees no ``ready`` and stops the evaluation (fail closed). The
program's limits are the kernel's from then on: nothing here is a guard the
program could switch off.

The settings arrive as one JSON line on stdin, followed by the program.
This file must run on any Python 3 (it runs on the sandbox's interpreter,
which need not be the caller's) and import only the standard library.
"""
import ctypes
import json
import os
import resource
import sys

LIBC = ctypes.CDLL(None, use_errno=True)
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
CLONE_NEWUSER = 0x10000000
CLONE_THREAD = 0x00010000
NOBODY = 65534
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 38, 24, 47
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

# seccomp: calls the program may not make (EPERM). clone is allowed for
# threads only; clone3 answers ENOSYS so that glibc falls back to clone.
DENIED_CALLS = (
    'fork', 'vfork', 'execve', 'execveat', 'memfd_create', 'memfd_secret',
    'socket', 'socketpair', 'unshare', 'setns', 'mount', 'umount2',
    'pivot_root', 'chroot', 'move_mount', 'open_tree', 'fsopen', 'fsmount',
    'fspick', 'fsconfig', 'mount_setattr', 'ptrace', 'process_vm_readv',
    'process_vm_writev', 'kcmp', 'pidfd_getfd', 'pidfd_open',
    'pidfd_send_signal', 'keyctl', 'add_key', 'request_key', 'bpf',
    'perf_event_open', 'userfaultfd', 'io_uring_setup', 'io_uring_enter',
    'io_uring_register', 'open_by_handle_at', 'name_to_handle_at',
    'kexec_load', 'kexec_file_load', 'init_module', 'finit_module',
    'delete_module', 'reboot', 'swapon', 'swapoff', 'acct', 'quotactl',
    'syslog', 'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex',
    'mknod', 'mknodat', 'personality', 'setpriority', 'sched_setaffinity',
    'sched_setscheduler', 'sched_setattr', 'ioprio_set', 'shmget', 'msgget',
    'semget', 'mq_open', 'ioperm', 'iopl', 'uselib', 'vhangup')


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


def seccomp(library_path):
    lib = ctypes.CDLL(library_path, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                     ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]

    class ArgCmp(ctypes.Structure):
        _fields_ = [('arg', ctypes.c_uint), ('op', ctypes.c_int),
                    ('datum_a', ctypes.c_uint64), ('datum_b', ctypes.c_uint64)]

    allow, errno_action = 0x7fff0000, 0x00050000
    ctx = lib.seccomp_init(allow)
    if not ctx:
        raise SetupError('seccomp_init failed')

    def deny(name, errno, *conditions):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # not a call on this architecture
            return
        check(lib.seccomp_rule_add(ctx, errno_action | errno, number,
                                   len(conditions), *conditions),
              f'seccomp rule for {name}')

    for name in DENIED_CALLS:
        deny(name, 1)  # EPERM
    deny('clone3', 38)  # ENOSYS: glibc falls back to clone
    scmp_cmp_masked_eq = 7
    deny('clone', 1, ArgCmp(0, scmp_cmp_masked_eq, CLONE_THREAD, 0))
    check(lib.seccomp_load(ctypes.c_void_p(ctx)), 'seccomp_load')
    lib.seccomp_release(ctypes.c_void_p(ctx))


def set_limits(rlimits):
    """``{'AS': bytes, 'CPU': seconds, ...}`` as hard and soft limits."""
    for name, value in rlimits.items():
        resource.setrlimit(getattr(resource, f'RLIMIT_{name}'), (value, value))


def main():
    settings = json.loads(sys.stdin.readline())
    code = sys.stdin.read()
    sys.stdin.close()
    try:
        mount_work_dir(settings['work_bytes'], settings['work_inodes'])
        become_nobody()
        drop_capabilities()
        set_limits(settings['rlimits'])
        landlock(settings['read_paths'], ['/work'])
        seccomp(settings['libseccomp'])
    except (SetupError, OSError, KeyError, ValueError) as err:
        print(f'sandbox setup failed: {err}', file=sys.stderr)
        sys.stderr.flush()
        os._exit(125)
    os.write(settings['status_fd'], b'ready')
    os.close(settings['status_fd'])
    return code


exec(compile(main(), '<program>', 'exec'), {'__name__': '__main__'})
