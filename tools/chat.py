"""Shim: `python tools/chat.py ...` runs xtuner_chartmoe/commands/chat.py
(the same as its `chartmoe` command)."""
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.commands.chat import main

if __name__ == '__main__':
    sys.exit(run_main(main))
