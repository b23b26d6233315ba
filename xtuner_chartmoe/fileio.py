"""Writes that never leave a half-written file or folder: a temporary one in
the same folder, then an atomic rename."""
import json
import os
import os.path as osp
import shutil
from contextlib import contextmanager


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` via a temporary file + rename."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def atomic_write_json(path, obj, indent=1):
    """``atomic_write_text`` of ``obj`` as JSON."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent))


@contextmanager
def atomic_directory(path):
    """Yield a new temporary folder beside ``path`` to write into; when the
    block succeeds it replaces ``path`` by renames, when it fails it is
    removed and ``path`` is left as it was."""
    path = osp.abspath(path)
    tmp = f'{path}.tmp{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = f'{path}.old{os.getpid()}'
    if osp.lexists(path):
        os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
