"""Which expert does each visual token pick? Maps, distribution, statistics,
and how the choice changes between two checkpoints.

    chartmoe analyze-routing --release work_dirs/chartmoe_tiny \\
        --data work_dirs/tiny/data/test/test_human.json \\
        --image-folder work_dirs/tiny/data --out work_dirs/routing_tiny
    # change of expert choice between two checkpoints of a run
    chartmoe analyze-routing --config CFG.py --checkpoint iter_100.pth \\
        --compare-config CFG.py --compare-checkpoint iter_600.pth \\
        --data ... --out work_dirs/routing_change

``--data`` is a ChartQA-format file (its distinct images are used) or a
folder of images. Writes routing_stats.json (top-1 counts and shares,
per-expert load, routing entropy, top-1/top-2 margin, per-image counts),
expert_distribution.png and expert_map_<image>.png (top-1 expert per patch
over the chart; general/table/JSON/code colours). With a second model
(``--compare-*``): routing_change.json (share of tokens whose top-1 expert
and whose set of chosen experts differ, per expert and overall, top-1
transitions) and routing_change.png.
"""
import argparse
import glob
import json
import os.path as osp
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.evaluation.routing_report import analyse, compare_routing
from xtuner_chartmoe.commands.model_options import add_model_arguments, load_chat


def image_paths(data, image_folder):
    if osp.isdir(data):
        return sorted(p for ext in ('png', 'jpg', 'jpeg')
                      for p in glob.glob(osp.join(data, f'*.{ext}')))
    with open(data) as f:
        names = dict.fromkeys(entry['imgname'] for entry in json.load(f))
    return [osp.join(image_folder or osp.dirname(data), n) for n in names]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe analyze-routing', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    add_model_arguments(parser)
    add_model_arguments(parser, 'compare-', required=False,
                        what='a second model to compare with')
    parser.add_argument('--data', required=True)
    parser.add_argument('--image-folder')
    parser.add_argument('--out', required=True)
    parser.add_argument('--maps', type=int, default=4)
    args = parser.parse_args(argv)
    chat = load_chat(args)
    other = (load_chat(args, 'compare-') if args.compare_release
             or args.compare_config else None)
    images = image_paths(args.data, args.image_folder)
    stats, maps = analyse(chat, images, args.out, num_maps=args.maps)
    change = other and compare_routing(chat, other, images, args.out)
    shares = ', '.join(f'{n} {s:.1%}' for n, s in zip(
        stats['expert_names'], stats['top1_fraction']))
    print(f"{stats['tokens']} visual tokens; top-1 share: {shares}; "
          f"entropy {stats['entropy']:.3f}; margin {stats['margin']:.3f}")
    print(f'written to {args.out}: routing_stats.json, '
          f'expert_distribution.png, {len(maps)} expert maps')
    if change:
        print(f"between the two models: top-1 expert changed for "
              f"{change['top1_changed']:.1%} of the tokens, the set of "
              f"chosen experts for {change['set_changed']:.1%}; "
              'routing_change.json, routing_change.png')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
