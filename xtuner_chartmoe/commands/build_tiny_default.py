"""Build the tiny offline default (model, tokenizer, charts) into a folder.

    chartmoe build-tiny --out work_dirs/tiny --seed 0
"""
import argparse
import sys

from xtuner_chartmoe.devkit.tiny import build_tiny_default


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe build-tiny', description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='work_dirs/tiny')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-charts', type=int, default=48)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args(argv)
    paths = build_tiny_default(args.out, args.seed, args.num_charts,
                               args.workers)
    for name, path in paths.items():
        print(f'{name:18s} {path}')


if __name__ == '__main__':
    sys.exit(main())
