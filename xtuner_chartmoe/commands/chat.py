"""Ask a ChartMoE release about a chart.

    chartmoe chat RELEASE --image chart.png --question "..." [--pot]

Prints the reply and how many visual tokens each expert took (top-1).
With --pot the program-of-thought prompt is used (the reply is Python code).
"""
import argparse
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.families import load_chat_model
from xtuner_chartmoe.prompts import PROMPTS


def main(argv=None):
    parser = argparse.ArgumentParser(prog='chartmoe chat',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('release_dir', help='a release folder (chartmoe '
                        'merge) or an InternLM-XComposer2 / ChartMoE folder '
                        'or hub id')
    parser.add_argument('--image', required=True)
    parser.add_argument('--question', required=True)
    parser.add_argument('--pot', action='store_true')
    parser.add_argument('--max-new-tokens', type=int, default=64)
    args = parser.parse_args(argv)
    chat = load_chat_model(args.release_dir)
    prompt = PROMPTS['pot' if args.pot else 'short'] + args.question
    replies, routing = chat.answer([args.image], [prompt],
                                   args.max_new_tokens, return_routing=True)
    print(f'question: {args.question}\nanswer:   {replies[0]}')
    counts = chat.top1_counts(routing)
    if counts:
        print('top-1 expert per visual token: ' + ', '.join(
            f'{n}={c}' for n, c in counts.items()))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
