"""Shim: `python tools/benchmark_sft.py ...` runs xtuner_chartmoe/commands/benchmark_sft.py
(the same as its `chartmoe` command)."""
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.benchmark_sft import main

if __name__ == '__main__':
    sys.exit(run_main(main))
