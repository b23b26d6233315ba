"""Shim: `python tools/benchmark_sandbox.py ...` runs xtuner_chartmoe/commands/benchmark_sandbox.py
(the same as its `chartmoe` command)."""
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.benchmark_sandbox import main

if __name__ == '__main__':
    sys.exit(run_main(main))
