"""``chartmoe`` command: the plugin's stage configs, like ``xtuner
list-cfg`` / ``xtuner copy-cfg``.

    chartmoe list-cfg [-p PATTERN]
    chartmoe copy-cfg CONFIG SAVE_DIR [--name NEW_NAME]

``copy-cfg`` writes CONFIG (a name from list-cfg, or a path) to
``SAVE_DIR/NEW_NAME.py`` (default ``<name>_copy.py``, as XTuner does). A
config that inherits (``with read_base(): from .parent import *``) is copied
with its parents, under their own names, so that it still loads.
"""
import argparse
import ast
import os
import os.path as osp
import shutil
import sys

CONFIG_ROOT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                       'configs')


def config_paths():
    """``{name: path}`` of every stage config shipped in ``configs/``."""
    found = {}
    for folder, _, files in os.walk(CONFIG_ROOT):
        for file in files:
            if file.endswith('.py') and not file.startswith('_'):
                found[file[:-3]] = osp.join(folder, file)
    return dict(sorted(found.items()))


def base_configs(path):
    """Relative modules a config inherits from (``from .x import *``)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    return [node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1]


def copy_config(config, save_dir, new_name=None):
    """Copy ``config`` (name or path) and its bases into ``save_dir``;
    returns the path of the copy."""
    path = config if osp.isfile(config) else config_paths().get(config)
    if path is None:
        raise FileNotFoundError(
            f'no config named {config!r}; see `chartmoe list-cfg`')
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog='chartmoe', description=__doc__,
                                     formatter_class=argparse.
                                     RawTextHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    listing = commands.add_parser('list-cfg', help='list the stage configs')
    listing.add_argument('-p', '--pattern', default='',
                         help='only names containing this (case-insensitive)')
    copying = commands.add_parser('copy-cfg', help='copy a stage config')
    copying.add_argument('config')
    copying.add_argument('save_dir')
    copying.add_argument('--name', help='file name of the copy, without .py')
    args = parser.parse_args(argv)
    if args.command == 'list-cfg':
        names = [n for n in config_paths() if args.pattern.lower() in n.lower()]
        print('\n'.join(names) if names else
              f'no config matches {args.pattern!r}')
        return 0
    try:
        target = copy_config(args.config, args.save_dir, args.name)
    except FileNotFoundError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'Copy to {target}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
