"""Reading a training run's outputs: the scalars mmengine's LocalVisBackend
writes (``<work_dir>/<timestamp>/vis_data/scalars.json``) and the checkpoint
its ``last_checkpoint`` file names."""
import glob
import json
import os.path as osp


def logged_scalars(work_dir):
    """The logged training rows (``loss``, ``lr``, routing statistics, ...)
    of the newest run in ``work_dir``, one dict per logged iteration."""
    runs = sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                                     'scalars.json')))
    if not runs:
        raise FileNotFoundError(f'{work_dir}: no vis_data/scalars.json (is a '
                                'LocalVisBackend visualizer configured?)')
    with open(runs[-1]) as f:
        return [row for row in map(json.loads, f) if 'loss' in row]


def last_checkpoint(work_dir):
    """The checkpoint (``iter_*.pth`` or DeepSpeed folder) that mmengine's
    ``<work_dir>/last_checkpoint`` names; errors say which is missing."""
    record = osp.join(str(work_dir), 'last_checkpoint')
    if not osp.isfile(record):
        raise FileNotFoundError(f'{record} not found: no checkpoint saved in '
                                f'{work_dir}')
    with open(record) as f:
        path = f.read().strip()
    if not osp.exists(path):
        raise FileNotFoundError(f'{record} points to a missing checkpoint: '
                                f'{path}')
    return path
