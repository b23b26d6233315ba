"""Which expert does each visual token pick? Maps, distribution, statistics.

    python tools/analyze_routing.py --release work_dirs/chartmoe_tiny \\
        --data work_dirs/tiny/data/test/test_human.json \\
        --image-folder work_dirs/tiny/data --out work_dirs/routing_tiny

``--data`` is a ChartQA-format file (its distinct images are used) or a
folder of images. Writes routing_stats.json (top-1 counts and shares,
per-expert load, routing entropy, top-1/top-2 margin, per-image counts),
expert_distribution.png and expert_map_<image>.png (top-1 expert per patch
over the chart; general/table/JSON/code colours).
"""
import argparse
import glob
import json
import os.path as osp

from xtuner_chartmoe.evaluation.analysis import analyse
from xtuner_chartmoe.inference import ChartMoEChat


def image_paths(data, image_folder):
    if osp.isdir(data):
        return sorted(p for ext in ('png', 'jpg', 'jpeg')
                      for p in glob.glob(osp.join(data, f'*.{ext}')))
    with open(data) as f:
        names = dict.fromkeys(entry['imgname'] for entry in json.load(f))
    return [osp.join(image_folder or osp.dirname(data), n) for n in names]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--release', required=True)
    parser.add_argument('--data', required=True)
    parser.add_argument('--image-folder')
    parser.add_argument('--out', required=True)
    parser.add_argument('--maps', type=int, default=4)
    args = parser.parse_args()
    chat = ChartMoEChat.from_release(args.release)
    stats, maps = analyse(chat, image_paths(args.data, args.image_folder),
                          args.out, num_maps=args.maps)
    shares = ', '.join(f'{n} {s:.1%}' for n, s in zip(
        stats['expert_names'], stats['top1_fraction']))
    print(f"{stats['tokens']} visual tokens; top-1 share: {shares}; "
          f"entropy {stats['entropy']:.3f}; margin {stats['margin']:.3f}")
    print(f'written to {args.out}: routing_stats.json, '
          f'expert_distribution.png, {len(maps)} expert maps')


if __name__ == '__main__':
    main()
