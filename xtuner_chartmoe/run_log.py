"""Reading a training run's log: the scalars mmengine's LocalVisBackend
writes (``<work_dir>/<timestamp>/vis_data/scalars.json``)."""
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
