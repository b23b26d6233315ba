"""Shim: `python tools/run_tiny_pipeline.py ...` runs xtuner_chartmoe/commands/run_tiny_pipeline.py
(the same as its `chartmoe` command)."""
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.run_tiny_pipeline import main

if __name__ == '__main__':
    sys.exit(run_main(main))
