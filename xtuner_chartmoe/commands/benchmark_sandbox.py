"""Programs per second through the PoT sandbox (bubblewrap, seccomp,
Landlock, one fresh interpreter per program).

    chartmoe benchmark sandbox [--programs 200] [--workers 2]

Runs ordinary program-of-thought programs (the kind the tiny data's PoT
answers are) and prints the throughput; the goal on a 2-core machine is
>= 20 programs/s with 2 workers.
"""
import argparse
import sys
import time

from xtuner_chartmoe.evaluation.sandbox import require, run_programs

PROGRAMS = (
    "data = {'Revenue': {'2019': 41.5, '2020': 47.25}}\n"
    "print(round(abs(data['Revenue']['2019'] - data['Revenue']['2020']), 2))",
    "data = {'Exports': {'China': 71, 'India': 18, 'Kenya': 33}}\n"
    "print(max(data['Exports'], key=data['Exports'].get))",
    "values = [12.5, 30.0, 18.25]\nprint(round(sum(values) / len(values), 2))",
    "print('Yes' if 45 > 38 else 'No')",
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe benchmark sandbox', description=__doc__.splitlines()[0])
    parser.add_argument('--programs', type=int, default=200)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args(argv)
    require()  # detection and self-test are not part of the figure
    codes = [PROGRAMS[i % len(PROGRAMS)] for i in range(args.programs)]
    start = time.perf_counter()
    results = run_programs(codes, workers=args.workers)
    seconds = time.perf_counter() - start
    failed = sum(not r.ok for r in results)
    print(f'{args.programs} programs with {args.workers} workers in '
          f'{seconds:.2f} s: {args.programs / seconds:.1f} programs/s '
          f'({failed} failed)')


if __name__ == '__main__':
    sys.exit(main())
