"""``chartmoe`` command: every tool of the plugin, XTuner-style.

    chartmoe list-cfg [-p PATTERN]              the shipped stage configs
    chartmoe copy-cfg CONFIG SAVE_DIR [--name]  copy one (with its parents)
    chartmoe train CONFIG [xtuner train args]   XTuner's train, fixes applied
    chartmoe convert pth_to_hf|merge ARGS       XTuner's converters, likewise
    chartmoe build-moe / merge / chat / demo / eval / eval-chartqa /
             analyze-routing / synthesize / build-tiny / standin /
             pipeline / benchmark {moe,synth,sandbox,sft}

``chartmoe <command> --help`` describes each. Unlike ``xtuner``, every
command exits non-zero when it fails. ``train`` and ``convert`` run XTuner's
own tools (a config may be given by name, as in ``list-cfg``) in a fresh
interpreter with the compatibility fixes of ``xtuner_chartmoe.engine.compat``
installed, under ``torchrun`` when ``NPROC_PER_NODE`` > 1 (as ``xtuner``).
"""
import argparse
import ast
import importlib
import importlib.util
import os
import os.path as osp
import shutil
import subprocess
import sys

from xtuner_chartmoe.engine.user_errors import UserError

# command -> (module of tools/, what it does)
TOOLS = {
    'build-moe': ('build_moe_connector', 'build / import / export the MoE '
                  'connector'),
    'merge': ('merge_chartmoe', 'merge a pth_to_hf output into a release'),
    'chat': ('chat', 'ask a release about a chart'),
    'demo': ('chat_demo', 'web chat demo (gradio)'),
    'eval': ('eval', "a chart benchmark of the paper on its data as "
             'downloaded (--list: which)'),
    'eval-chartqa': ('eval_chartqa', 'ChartQA relaxed accuracy, with PoT '
                     '(= eval chartqa)'),
    'analyze-routing': ('analyze_routing', 'expert maps and routing '
                        'statistics'),
    'synthesize': ('synthesize_charts', 'render chart data (quadruples, QA)'),
    'build-tiny': ('build_tiny_default', 'build the tiny offline default'),
    'standin': ('standin', 'real-architecture stand-ins for the real '
                'configs'),
    'pipeline': ('run_tiny_pipeline', 'the whole tiny pipeline on CPU'),
}
BENCHMARKS = {'moe': 'benchmark_moe', 'synth': 'benchmark_synth',
              'sandbox': 'benchmark_sandbox', 'sft': 'benchmark_sft'}
CONVERTERS = ('pth_to_hf', 'merge', 'split')


def config_root():
    """The folder of the shipped configs (``configs/`` of the repository,
    ``xtuner_chartmoe/configs`` of an installed wheel)."""
    spec = importlib.util.find_spec('xtuner_chartmoe.configs')
    return list(spec.submodule_search_locations)[0]


def config_paths():
    """``{name: path}`` of every stage config shipped."""
    found = {}
    for folder, _, files in os.walk(config_root()):
        for file in files:
            if file.endswith('.py') and not file.startswith('_'):
                found[file[:-3]] = osp.join(folder, file)
    return dict(sorted(found.items()))


def resolve_config(config):
    """A config path, or the shipped config of that name."""
    if osp.isfile(config):
        return config
    path = config_paths().get(config)
    if path is None:
        raise FileNotFoundError(
            f'no config named {config!r}; see `chartmoe list-cfg`')
    return path


def base_configs(path):
    """Relative modules a config inherits from (``from .x import *``)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    return [node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1]


def copy_config(config, save_dir, new_name=None):
    """Copy ``config`` (name or path) and its bases into ``save_dir``;
    returns the path of the copy."""
    path = resolve_config(config)
    os.makedirs(save_dir, exist_ok=True)
    name = new_name or osp.basename(path)[:-3] + '_copy'
    target = osp.join(save_dir, name + '.py')
    todo = [(path, target)]
    while todo:
        source, destination = todo.pop()
        shutil.copyfile(source, destination)
        for base in base_configs(source):
            base_source = osp.join(osp.dirname(source), base + '.py')
            todo.append((base_source, osp.join(save_dir, base + '.py')))
    return target


def run_xtuner(module, args):
    """Run XTuner's ``module`` (e.g. ``xtuner.tools.train``) in a fresh
    interpreter with the compatibility fixes installed; returns its exit
    status. A DeepSpeed run first checks for a known-bad DeepSpeed."""
    if '--deepspeed' in args:
        from xtuner_chartmoe.engine.version_guard import check
        check('deepspeed')
    nproc = int(os.environ.get('NPROC_PER_NODE', '1'))
    launch = [sys.executable]
    if module == 'xtuner.tools.train' and nproc > 1:
        launch += ['-m', 'torch.distributed.run', '--nproc_per_node',
                   str(nproc), '--nnodes', os.environ.get('NNODES', '1'),
                   '--node_rank', os.environ.get('NODE_RANK', '0'),
                   '--master_addr', os.environ.get('ADDR', '127.0.0.1'),
                   '--master_port', os.environ.get('PORT', '29500')]
        args = [*args, '--launcher', 'pytorch']
    return subprocess.run([*launch, '-m', 'xtuner_chartmoe.engine.run_xtuner',
                           module, *args]).returncode


def _tool_main(module):
    return importlib.import_module(f'xtuner_chartmoe.commands.{module}').main


def parser():
    top = argparse.ArgumentParser(
        prog='chartmoe', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    commands = top.add_subparsers(dest='command', required=True,
                                  metavar='COMMAND')
    listing = commands.add_parser('list-cfg', help='list the stage configs')
    listing.add_argument('-p', '--pattern', default='',
                         help='only names containing this (case-insensitive)')
    copying = commands.add_parser('copy-cfg', help='copy a stage config')
    copying.add_argument('config')
    copying.add_argument('save_dir')
    copying.add_argument('--name', help='file name of the copy, without .py')
    commands.add_parser('train', help="XTuner's train (config name or path)")
    commands.add_parser('convert', help="XTuner's converters: " +
                        ', '.join(CONVERTERS))
    for command, (_, help_text) in TOOLS.items():
        commands.add_parser(command, help=help_text)
    commands.add_parser('benchmark', help='benchmarks: ' +
                        ', '.join(BENCHMARKS))
    return top


def passthrough(command, rest):
    """The commands whose arguments belong to the tool they run."""
    if command == 'train':
        if not rest or rest[0] in ('-h', '--help'):
            return run_xtuner('xtuner.tools.train', ['--help'])
        return run_xtuner('xtuner.tools.train',
                          [resolve_config(rest[0]), *rest[1:]])
    if command == 'convert':
        if not rest or rest[0] not in CONVERTERS:
            print('usage: chartmoe convert {%s} ARGS' % ','.join(CONVERTERS),
                  file=sys.stderr)
            return 0 if rest[:1] in (['-h'], ['--help']) else 2
        if rest[0] == 'pth_to_hf' and len(rest) > 1 and not rest[1].startswith(
                '-'):
            rest[1] = resolve_config(rest[1])
        return run_xtuner(f'xtuner.tools.model_converters.{rest[0]}',
                          rest[1:])
    if command == 'benchmark':
        if not rest or rest[0] not in BENCHMARKS:
            print('usage: chartmoe benchmark {%s} [--help]' %
                  ','.join(BENCHMARKS), file=sys.stderr)
            return 0 if rest[:1] in (['-h'], ['--help']) else 2
        return _tool_main(BENCHMARKS[rest[0]])(rest[1:]) or 0
    return _tool_main(TOOLS[command][0])(rest) or 0


def run_config_command(args):
    if args.command == 'list-cfg':
        names = [n for n in config_paths() if args.pattern.lower() in n.lower()]
        if not names:
            print(f'no config matches {args.pattern!r}', file=sys.stderr)
            return 1
        print('\n'.join(names))
        return 0
    if args.command == 'copy-cfg':
        print(f'Copy to {copy_config(args.config, args.save_dir, args.name)}')
        return 0


# what a user can get wrong (a missing file, a bad value, a failed step):
# reported in one line, never as a traceback
USER_ERRORS = (FileNotFoundError, ValueError, UserError,
               subprocess.CalledProcessError)


def run_main(main, argv=None):
    """Exit status of a command's ``main(argv)``: a :data:`USER_ERRORS`
    error prints ``error: ...`` and gives 1; ``sys.exit('message')`` (argparse
    too) prints the message and gives 1. The ``chartmoe`` command and every
    ``tools/*.py`` script run their ``main`` through it."""
    try:
        return main(argv) or 0
    except USER_ERRORS as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    except SystemExit as exit_:
        code = exit_.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            return 1
        return code or 0


def _main(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] in TOOLS or argv[0] in ('train', 'convert',
                                                 'benchmark')):
        return passthrough(argv[0], argv[1:])
    return run_config_command(parser().parse_args(argv))


def main(argv=None):
    return run_main(_main, argv)


if __name__ == '__main__':
    sys.exit(main())
