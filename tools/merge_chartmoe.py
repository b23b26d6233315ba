"""Shim: `python tools/merge_chartmoe.py ...` runs xtuner_chartmoe/commands/merge_chartmoe.py
(the same as its `chartmoe` command)."""
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.merge_chartmoe import main

if __name__ == '__main__':
    sys.exit(run_main(main))
