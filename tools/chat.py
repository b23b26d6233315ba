"""Ask a ChartMoE release about a chart.

    python tools/chat.py RELEASE_DIR --image chart.png --question "..." [--pot]

Prints the reply and how many visual tokens each expert took (top-1).
With --pot the program-of-thought prompt is used (the reply is Python code).
"""
import argparse

import torch

from xtuner_chartmoe.dataset.chart_synth import PROMPTS
from xtuner_chartmoe.inference import ChartMoEChat


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('release_dir')
    parser.add_argument('--image', required=True)
    parser.add_argument('--question', required=True)
    parser.add_argument('--pot', action='store_true')
    parser.add_argument('--max-new-tokens', type=int, default=64)
    args = parser.parse_args()
    chat = ChartMoEChat.from_release(args.release_dir)
    prompt = PROMPTS['pot' if args.pot else 'short'] + args.question
    reply = chat.answer([args.image], [prompt], args.max_new_tokens)[0]
    print(f'question: {args.question}\nanswer:   {reply}')
    if chat.last_routing is not None:
        names = chat.projector.config.expert_names
        top1 = chat.last_routing.selected_experts[0, :, 0]
        counts = torch.bincount(top1, minlength=len(names)).tolist()
        print('top-1 expert per visual token: ' + ', '.join(
            f'{n}={c}' for n, c in zip(names, counts)))


if __name__ == '__main__':
    main()
