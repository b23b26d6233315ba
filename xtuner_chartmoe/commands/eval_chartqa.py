"""Evaluate a ChartMoE model on ChartQA-format splits (relaxed accuracy).

    chartmoe eval-chartqa --release work_dirs/chartmoe_tiny \\
        --data-root work_dirs/tiny/data/test --image-folder work_dirs/tiny/data \\
        --out work_dirs/eval_tiny [--modes short pot] [--force-expert 1]
    chartmoe eval-chartqa --config CFG.py --checkpoint iter_N.pth ...
    chartmoe eval-chartqa --release IDEA-FinAI/chartmoe --protocol both ...

``--release`` takes a LLaVA-family release or an InternLM-XComposer2 /
ChartMoE folder or hub id. ``--protocol chartmoe`` scores as ChartMoE's own
``eval_ChartQA.py`` does (``--pot-idx 1``: the PoT prompt of its reproduced
numbers); ``both`` reports ours and its side by side.

Splits are ``<data-root>/test_<split>.json`` (default: human, augmented;
any other split name in that format works). Predictions are cached in
``<out>/predictions``: a re-run (after an interruption) only generates what
is missing. PoT programs run in the sandbox (separate process, time and
memory limits, no network, no view of the data; see
``xtuner_chartmoe/evaluation/sandbox.py``); without bubblewrap a PoT
evaluation stops at once with one line saying how to install it. Writes
``results.txt`` / ``results.json`` (rows Human / Augmented / Averaged,
columns @0.05 / @0.1 / @0.2) and per-question ``answers_*.jsonl``.
"""
import argparse
import os.path as osp
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.evaluation.chartqa import (OURS, chartmoe_protocol,
                                                 evaluate)
from xtuner_chartmoe.evaluation.sandbox import SandboxUnavailable, require
from xtuner_chartmoe.commands.model_options import add_model_arguments, load_chat


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe eval-chartqa', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--image-folder',
                        help='default: <data-root>/png (ChartQA layout)')
    parser.add_argument('--splits', nargs='+', default=['human', 'augmented'])
    parser.add_argument('--modes', nargs='+', default=['short', 'pot'],
                        choices=['short', 'pot'])
    parser.add_argument('--out', required=True)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--max-new-tokens', type=int, default=500)
    parser.add_argument('--pot-workers', type=int, default=4)
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
    parser.add_argument('--force-expert', type=int,
                        help='route every visual token to this expert')
    parser.add_argument('--device')
    return parser.parse_args(argv)


def fail(message):
    print(f'error: {message}', file=sys.stderr)
    return 1


def main(argv=None):
    args = parse_args(argv)
    if args.config and not args.checkpoint:
        return fail('--config needs --checkpoint')
    if 'pot' in args.modes:
        try:
            require()
        except SandboxUnavailable as err:
            return fail(err)
    split_files = {s: osp.join(args.data_root, f'test_{s}.json')
                   for s in args.splits}
    for path in split_files.values():
        if not osp.isfile(path):
            return fail(f'split file not found: {path}')
    chat = load_chat(args, device=args.device)
    if args.force_expert is not None:
        try:
            chat.force_expert(args.force_expert)
        except ValueError as err:
            return fail(f'--force-expert: {err}')
    chartmoe = chartmoe_protocol(args.pot_idx)
    protocols = {'ours': (OURS,), 'chartmoe': (chartmoe,),
                 'both': (OURS, chartmoe)}[args.protocol]
    _, text = evaluate(chat, split_files,
                       args.image_folder or osp.join(args.data_root, 'png'),
                       args.out, args.modes, args.batch_size,
                       args.max_new_tokens, args.pot_workers, protocols)
    print(text)
    print(f'written to {args.out}/results.txt and results.json')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
