"""Charts per second of the chart synthesis (render + quadruple + records).

    chartmoe benchmark synth [--num-charts 300] [--workers 2]

Renders into a fresh temporary folder (deleted afterwards) and prints the
throughput; the goal on a 2-core machine is >= 30 charts/s.
"""
import argparse
import sys
import tempfile
import time

from xtuner_chartmoe.dataset.synthesize import synthesize


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe benchmark synth', description=__doc__.splitlines()[0])
    parser.add_argument('--num-charts', type=int, default=300)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        synthesize(out, args.num_charts, num_workers=args.workers,
                   progress=False)
        seconds = time.perf_counter() - start
    print(f'{args.num_charts} charts with {args.workers} workers in '
          f'{seconds:.1f} s: {args.num_charts / seconds:.1f} charts/s')


if __name__ == '__main__':
    sys.exit(main())
