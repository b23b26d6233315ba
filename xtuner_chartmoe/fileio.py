"""Writes that never leave a half-written file: a temporary file in the same
folder, then an atomic rename."""
import json
import os
import os.path as osp


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
