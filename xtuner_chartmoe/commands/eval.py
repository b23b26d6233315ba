"""Evaluate a model on one of the paper's chart benchmarks, on the data as
downloaded.

    chartmoe eval --list
    chartmoe eval chartqa --release work_dirs/chartmoe_tiny \\
        --data work_dirs/tiny/data/test --image-folder work_dirs/tiny/data
    huggingface-cli download HuggingFaceM4/ChartQA --repo-type dataset \\
        --local-dir data/m4_chartqa
    chartmoe eval chartqa --release IDEA-FinAI/chartmoe \\
        --data data/m4_chartqa --modes short pot --protocol ours chartmoe
    chartmoe eval chartqa --config CFG.py --checkpoint iter_N.pth --data ...

``--data``: the file or folder as downloaded (JSON, JSON lines or the
hub's parquet with the images inside; ``--list`` says which each benchmark
takes); ``--image-folder``: where images named by path are (default: the
benchmark's layout). ``--release`` takes a LLaVA-family release or an
InternLM-XComposer2 / ChartMoE folder or hub id. ``--protocol``: one or
more of the benchmark's (default: its first), or ``all``.

Every file is read and checked before the model loads; predictions are
cached in ``<out>/predictions`` (a re-run after an interruption generates
only what is missing); PoT programs run in the sandbox (without
bubblewrap a PoT evaluation stops at once with one line saying how to get
it); an image that cannot be read is named and its sample counted wrong.
Writes ``results.json``, ``results.txt`` and ``answers_*.jsonl`` to
``--out`` (default ``work_dirs/eval_<benchmark>``).
"""
import argparse
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.model_options import (add_model_arguments,
                                                    load_chat)


def add_run_arguments(parser):
    """The options of a run every evaluation command shares."""
    parser.add_argument('--image-folder',
                        help="where images named by path are (default: the "
                        "benchmark's layout, e.g. ChartQA's png/)")
    parser.add_argument('--modes', nargs='+',
                        help="answer modes (default: all the benchmark's)")
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--max-new-tokens', type=int, default=500)
    parser.add_argument('--pot-workers', type=int, default=4)
    parser.add_argument('--force-expert', type=int,
                        help='route every visual token to this expert')
    parser.add_argument('--device')


def listing():
    """Each registered benchmark: its modes, protocols and formats."""
    from xtuner_chartmoe.evaluation.benchmarks import registered
    blocks = []
    for name, benchmark in registered().items():
        lines = [f'{name}: {benchmark.title}, {benchmark.metric}',
                 f'  modes: {", ".join(benchmark.modes)}', '  protocols:']
        lines += [f'    {p.name}{" (default)" if i == 0 else ""}: {p.about}'
                  for i, p in enumerate(benchmark.protocols.values())]
        lines.append('  formats (--data):')
        lines += [f'    {f.name}: {f.files}; fields {", ".join(f.fields)}'
                  for f in benchmark.formats]
        blocks.append('\n'.join(lines))
    return '\n\n'.join(blocks)


def evaluate(args, name, data, protocols, out):
    """Run benchmark ``name`` on ``data`` (a path or paths) for the model of
    ``args`` (:func:`add_model_arguments`, :func:`add_run_arguments`):
    the inputs are checked (data, modes, protocols, sandbox) before the
    model loads; prints the tables. Returns the content of
    ``results.json``."""
    from xtuner_chartmoe.evaluation.benchmarks import get_benchmark
    from xtuner_chartmoe.evaluation.benchmarks.runner import (
        choose, load_samples, run)
    from xtuner_chartmoe.engine.user_errors import UserError
    from xtuner_chartmoe.evaluation.sandbox import SandboxUnavailable, require
    if args.config and not args.checkpoint:
        raise ValueError('--config needs --checkpoint')
    benchmark = get_benchmark(name)
    modes, _ = choose(benchmark, args.modes, protocols)
    if 'pot' in modes:
        try:
            require()
        except SandboxUnavailable as err:
            raise UserError(err) from None
    samples = load_samples(benchmark, data, args.image_folder)
    chat = load_chat(args, device=args.device)
    if args.force_expert is not None:
        try:
            chat.force_expert(args.force_expert)
        except ValueError as err:
            raise ValueError(f'--force-expert: {err}') from None
    results, text = run(benchmark, chat, samples, out, modes=modes,
                  protocols=protocols, batch_size=args.batch_size,
                  max_new_tokens=args.max_new_tokens,
                  pot_workers=args.pot_workers)
    print(text)
    print(f'written to {out}/results.txt and results.json')
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe eval', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('benchmark', nargs='?',
                        help='a benchmark name (see --list)')
    parser.add_argument('--list', action='store_true',
                        help='the benchmarks, with the formats each reads')
    add_model_arguments(parser, required=False)
    parser.add_argument('--data', help='file or folder as downloaded')
    add_run_arguments(parser)
    parser.add_argument('--protocol', nargs='+',
                        help="the benchmark's protocols to score under, or "
                        'all (default: its first)')
    parser.add_argument('--out', help='default: work_dirs/eval_<benchmark>')
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    if not args.benchmark or not args.data or not (args.release or
                                                   args.config):
        raise ValueError('give BENCHMARK, --data and --release (or '
                         '--config and --checkpoint), or --list')
    evaluate(args, args.benchmark, args.data, args.protocol,
             args.out or f'work_dirs/eval_{args.benchmark}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
