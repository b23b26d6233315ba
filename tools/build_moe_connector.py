"""Shim: `python tools/build_moe_connector.py ...` runs xtuner_chartmoe/commands/build_moe_connector.py
(the same as its `chartmoe` command)."""
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.build_moe_connector import main

if __name__ == '__main__':
    sys.exit(run_main(main))
