"""Synthesize ChartMoE-Align style data: charts + table/JSON/code + QA.

    chartmoe synthesize OUT_DIR --num-charts 1000 [--seed 0]
    chartmoe synthesize OUT_DIR --tables my_tables/*.csv

Writes charts/, quads/, align_{table,json,code}.json (ChartMoE format, for
the align configs), knowledge_mmc.json (MMC-Instruct format),
sft_chartqa.json (short + PoT answers) and test/test_*.json (ChartQA
format). Chart types: xtuner_chartmoe/dataset/chart_types.py. Resumable:
charts already in quads/ are kept. Output is a pure function of the seed
(and tables), whatever --workers is.
"""
import argparse
import sys
import time

from xtuner_chartmoe.dataset.tables import load_tables
from xtuner_chartmoe.dataset.synthesize import synthesize


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe synthesize', description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('out_dir')
    parser.add_argument('--num-charts', type=int, default=100)
    parser.add_argument('--tables', nargs='+',
                        help='CSV / JSON table files (instead of random)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--test-fraction', type=float, default=0.25)
    args = parser.parse_args(argv)
    tables = None
    if args.tables:
        try:
            tables = [t for path in args.tables for t in load_tables(path)]
        except (OSError, ValueError) as err:
            sys.exit(f'error: {err}')
    start = time.time()
    stats = synthesize(args.out_dir, args.num_charts, seed=args.seed,
                       num_workers=args.workers,
                       test_fraction=args.test_fraction, tables=tables)
    seconds = time.time() - start
    print(f"rendered {stats['rendered']} charts, kept {stats['skipped']} "
          f"existing, {seconds:.1f} s "
          f"({stats['rendered'] / max(seconds, 1e-9):.1f} charts/s)")
    for name, path in stats['files'].items():
        print(f'{name:15s} {path}')


if __name__ == '__main__':
    sys.exit(main())
