"""Evaluate a ChartMoE model on ChartQA-format splits (relaxed accuracy):
``chartmoe eval chartqa`` with the options this command has always had.

    chartmoe eval-chartqa --release work_dirs/chartmoe_tiny \\
        --data-root work_dirs/tiny/data/test \\
        --image-folder work_dirs/tiny/data --out work_dirs/eval_tiny \\
        [--modes short pot] [--force-expert 1]
    chartmoe eval-chartqa --config CFG.py --checkpoint iter_N.pth ...
    chartmoe eval-chartqa --release IDEA-FinAI/chartmoe --protocol both ...

``--release`` takes a LLaVA-family release or an InternLM-XComposer2 /
ChartMoE folder or hub id. ``--protocol chartmoe`` scores as ChartMoE's own
``eval_ChartQA.py`` does (``--pot-idx 1``: the PoT prompt of its reproduced
numbers); ``both`` reports ours and its side by side.

Splits are ``<data-root>/test_<split>.json`` (default: human, augmented;
any other split name in that format works); images under
``--image-folder`` (default ``<data-root>/png``, ChartQA's layout). For the
hub's parquet formats use ``chartmoe eval chartqa --data``. Predictions are
cached in ``<out>/predictions``: a re-run (after an interruption) only
generates what is missing. PoT programs run in the sandbox (separate
process, time and memory limits, no network, no view of the data; see
``xtuner_chartmoe/evaluation/sandbox.py``); without bubblewrap a PoT
evaluation stops at once with one line saying how to install it. Writes
``results.txt`` / ``results.json`` (rows Human / Augmented / Averaged,
columns 0.05 / 0.1 / 0.2) and per-question ``answers_*.jsonl``.
``results.json`` keeps this command's layout: ``{mode: table}``, or with
``--protocol both`` ``{'ours': {mode: table}, 'chartmoe (pot_idx N)':
{...}}`` (``chartmoe eval`` writes the seam's, with ``scores`` per
protocol and the sample counts).
"""
import argparse
import os.path as osp
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.eval import add_run_arguments, evaluate
from xtuner_chartmoe.commands.model_options import add_model_arguments
from xtuner_chartmoe.fileio import atomic_write_json

# The names this command has always given ChartQA's protocols.
LEGACY_NAMES = {'ours': 'ours', 'chartmoe': 'chartmoe (pot_idx 0)',
                'chartmoe-pot1': 'chartmoe (pot_idx 1)'}


def legacy_results(scores):
    """The runner's ``scores`` (``{protocol: {mode: table}}``) in this
    command's ``results.json`` layout: one protocol's ``{mode: table}``, or
    ``{legacy name: {mode: table}}`` for two."""
    if len(scores) == 1:
        return next(iter(scores.values()))
    return {LEGACY_NAMES[name]: tables for name, tables in scores.items()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe eval-chartqa', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--splits', nargs='+', default=['human', 'augmented'])
    parser.add_argument('--out', required=True)
    add_run_arguments(parser)
    parser.add_argument('--protocol', default='ours',
                        choices=['ours', 'chartmoe', 'both'],
                        help="ours: the paper's relaxed accuracy (empty "
                        "answers wrong, numbers with %%/,/$ read); chartmoe: "
                        "ChartMoE's eval_ChartQA.py (its prompts, PoT "
                        "post-processing and scorer); both: side by side")
    parser.add_argument('--pot-idx', type=int, default=0, choices=[0, 1],
                        help="ChartMoE's PoT prompt (--protocol chartmoe): 0 "
                        'its default, 1 the prompt of the reproduced '
                        "checkpoint's numbers")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from xtuner_chartmoe.evaluation.benchmarks.chartqa import (
        chartmoe_protocol)
    chartmoe = chartmoe_protocol(args.pot_idx).name
    protocols = {'ours': ['ours'], 'chartmoe': [chartmoe],
                 'both': ['ours', chartmoe]}[args.protocol]
    results = evaluate(args, 'chartqa', [
        osp.join(args.data_root, f'test_{split}.json')
        for split in args.splits], protocols, args.out)
    atomic_write_json(osp.join(args.out, 'results.json'),
                      legacy_results(results['scores']))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
