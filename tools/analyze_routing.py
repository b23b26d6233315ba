"""Shim: `python tools/analyze_routing.py ...` runs xtuner_chartmoe/commands/analyze_routing.py
(the same as its `chartmoe` command)."""
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.analyze_routing import main

if __name__ == '__main__':
    sys.exit(run_main(main))
