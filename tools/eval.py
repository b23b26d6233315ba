"""Shim: `python tools/eval.py ...` runs xtuner_chartmoe/commands/eval.py
(the same as its `chartmoe` command)."""
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.eval import main

if __name__ == '__main__':
    sys.exit(run_main(main))
