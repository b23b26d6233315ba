"""Write a ChartMoE-Align style data set: charts, quadruples and records.

Layout of ``out_dir``::

    charts/000000.png ...        rendered charts
    quads/000000.json ...        quadruple + questions (written after its PNG)
    align_table.json, align_json.json, align_code.json   ChartMoE format
    knowledge_mmc.json           chart knowledge, MMC-Instruct format
    sft_chartqa.json             QA, ChartQA format + ``pot`` programs
    test/test_human.json, test/test_augmented.json        ChartQA format

Charts whose quadruple file exists are skipped (resumable). Every file is
written to a temporary name and renamed, so an interrupted run leaves no
half-written file. Output is a pure function of ``(seed, num_charts)``,
whatever the number of workers.
"""
import json
import os
import os.path as osp
from multiprocessing import Pool

from tqdm import tqdm

from ..fileio import atomic_write_json
from .charts import render_code
from .quadruples import make_quadruple
from .records import quadruple_records

RECORD_FILES = {'table': 'align_table.json', 'json': 'align_json.json',
                'code': 'align_code.json', 'chartqa': 'sft_chartqa.json',
                'knowledge': 'knowledge_mmc.json'}


def _chart_paths(out_dir, index):
    return (osp.join(out_dir, 'charts', f'{index:06d}.png'),
            osp.join(out_dir, 'quads', f'{index:06d}.json'))


def _make_one(job):
    out_dir, seed, index, table = job
    png, quad_file = _chart_paths(out_dir, index)
    if osp.isfile(quad_file):
        return False
    quad = make_quadruple(seed, index, table=table)
    tmp_png = f'{png[:-4]}.tmp{os.getpid()}.png'
    render_code(quad['code'], tmp_png)
    os.replace(tmp_png, png)
    atomic_write_json(quad_file, quad)
    return True


def synthesize(out_dir, num_charts=None, seed=0, num_workers=2,
               test_fraction=0.25, progress=True, tables=None):
    """Render ``num_charts`` charts (one per table of ``tables`` if given,
    else from random tables) into ``out_dir`` and write the record files.
    Returns ``{'rendered': n_new, 'skipped': n_existing, 'files': {...}}``.
    The last ``test_fraction`` of the charts make the ChartQA-style test
    split (half human, half augmented); the rest the training records."""
    tables = list(tables) if tables is not None else [None] * num_charts
    num_charts = len(tables)
    if num_charts < 2:
        raise ValueError(f'need at least 2 charts, got {num_charts}')
    for sub in ('charts', 'quads'):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)
    jobs = [(out_dir, seed, i, table) for i, table in enumerate(tables)]
    bar = tqdm(total=num_charts, desc='charts', unit='chart',
               disable=not progress)
    rendered = 0
    if num_workers > 1:
        with Pool(num_workers) as pool:
            for new in pool.imap_unordered(_make_one, jobs, chunksize=4):
                rendered += new
                bar.update()
    else:
        for job in jobs:
            rendered += _make_one(job)
            bar.update()
    bar.close()
    files = write_records(out_dir, num_charts, test_fraction)
    return {'rendered': rendered, 'skipped': num_charts - rendered,
            'files': files}


def write_records(out_dir, num_charts, test_fraction=0.25):
    """Assemble the record files from ``quads/`` (see module docstring)."""
    num_test = max(int(num_charts * test_fraction), 0)
    train = {kind: [] for kind in RECORD_FILES}
    test = []
    for index in range(num_charts):
        with open(_chart_paths(out_dir, index)[1]) as f:
            quad = json.load(f)
        records = quadruple_records(quad, f'charts/{index:06d}.png')
        if index >= num_charts - num_test:
            test.extend(records['chartqa'])
            continue
        for kind in RECORD_FILES:
            train[kind].extend(records[kind])
    files = {}
    for kind, name in RECORD_FILES.items():
        files[kind] = osp.join(out_dir, name)
        atomic_write_json(files[kind], train[kind])
    for entry in test:
        del entry['pot']
    half = len(test) // 2
    for split, entries in (('human', test[:half]), ('augmented', test[half:])):
        files[f'test_{split}'] = osp.join(out_dir, 'test', f'test_{split}.json')
        atomic_write_json(files[f'test_{split}'], entries)
    return files
