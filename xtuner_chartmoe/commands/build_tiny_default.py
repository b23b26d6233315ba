"""Build the tiny offline default (model, tokenizer, charts) into a folder.

    chartmoe build-tiny --out work_dirs/tiny --seed 0
    chartmoe build-tiny --family ixc2 --out work_dirs/tiny_ixc2 \\
        [--charts-from work_dirs/tiny/data]

``--family llava`` (default): XTuner's LLaVA parts (``devkit.tiny``);
``--family ixc2``: a tiny InternLM-XComposer2 release, its upcycled MoE
connector and ChartMoE-Data's files (``devkit.tiny_ixc2``).
"""
import argparse
import sys

DEFAULT_OUT = {'llava': 'work_dirs/tiny', 'ixc2': 'work_dirs/tiny_ixc2'}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe build-tiny', description=__doc__.splitlines()[0])
    parser.add_argument('--family', choices=sorted(DEFAULT_OUT),
                        default='llava')
    parser.add_argument('--out', default=None,
                        help='default: work_dirs/tiny (llava), '
                        'work_dirs/tiny_ixc2 (ixc2)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-charts', type=int, default=None,
                        help='default: 48 (llava), 16 (ixc2)')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--charts-from', default=None,
                        help='ixc2: reuse the rendered charts of this data '
                        'folder (e.g. work_dirs/tiny/data)')
    args = parser.parse_args(argv)
    out = args.out or DEFAULT_OUT[args.family]
    if args.family == 'ixc2':
        from xtuner_chartmoe.devkit.tiny_ixc2 import build_tiny_ixc2
        paths = build_tiny_ixc2(out, args.seed, args.num_charts or 16,
                                args.workers, args.charts_from)
    else:
        if args.charts_from:
            parser.error('--charts-from applies to --family ixc2')
        from xtuner_chartmoe.devkit.tiny import build_tiny_default
        paths = build_tiny_default(out, args.seed, args.num_charts or 48,
                                   args.workers)
    for name, path in paths.items():
        print(f'{name:18s} {path}')


if __name__ == '__main__':
    sys.exit(main())
