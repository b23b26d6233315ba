import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')


@pytest.fixture(scope='session')
def workspace(tmp_path_factory):
    """A folder laid out like the repo root for the tiny configs, with the
    tiny default (16 charts) built under work_dirs/tiny."""
    from xtuner_chartmoe.tiny import build_tiny_default
    root = tmp_path_factory.mktemp('ws')
    build_tiny_default(str(root / 'work_dirs' / 'tiny'), seed=0,
                       num_charts=16, num_workers=2, progress=False)
    return root


def run_tool(args, cwd, check=True):
    """Run ``python args...`` in ``cwd``; return the CompletedProcess."""
    result = subprocess.run([sys.executable, *args], cwd=cwd,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f'{args} failed ({result.returncode}):\n'
                             f'{result.stdout[-3000:]}\n{result.stderr[-5000:]}')
    return result
