"""Build the ChartMoE MoE connector from dense projector checkpoints.

    # diverse (ChartMoE): general + the three aligned projectors
    python tools/build_moe_connector.py diverse OUT_DIR \\
        --projectors GENERAL TABLE JSON CODE [--top-k 2] [--router softmax]
    # upcycle: the general projector copied into every expert
    python tools/build_moe_connector.py upcycle OUT_DIR --projectors GENERAL
    # random: fresh experts with the general projector's sizes
    python tools/build_moe_connector.py random OUT_DIR --projectors GENERAL

A projector is an XTuner ``projector/`` folder, a checkpoint ``.pth`` / a
DeepSpeed folder, or a training work dir (its last checkpoint). OUT_DIR is
written with ``save_pretrained`` (weights + code) and reloads with
``AutoModel.from_pretrained(OUT_DIR, trust_remote_code=True)``; point
``moe_projector=dict(pretrained=OUT_DIR)`` of a stage config at it.
"""
import argparse
import os.path as osp
import shutil
import sys

from xtuner_chartmoe.model import ROUTERS, build_moe_projector


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('mode', choices=('diverse', 'upcycle', 'random'))
    parser.add_argument('out_dir')
    parser.add_argument('--projectors', nargs='+', required=True)
    parser.add_argument('--num-experts', type=int, default=4,
                        help='upcycle/random only (diverse: one per projector)')
    parser.add_argument('--top-k', type=int, default=2)
    parser.add_argument('--router', default='softmax', choices=sorted(ROUTERS))
    parser.add_argument('--expert-names', nargs='+')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        moe = build_moe_projector(
            args.mode, args.projectors, num_experts=args.num_experts,
            num_selected=args.top_k, router_type=args.router,
            expert_names=args.expert_names, seed=args.seed)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f'error: {err}')
    tmp_dir = args.out_dir.rstrip('/') + '.tmp'
    shutil.rmtree(tmp_dir, ignore_errors=True)
    moe.save_pretrained(tmp_dir)
    if osp.isdir(args.out_dir):
        shutil.rmtree(args.out_dir)
    shutil.move(tmp_dir, args.out_dir)
    cfg = moe.config
    print(f'MoE connector ({args.mode}): {cfg.num_experts} experts '
          f'{cfg.expert_names}, {cfg.visual_hidden_size} -> '
          f'{cfg.llm_hidden_size}, top-{cfg.num_selected}, {cfg.router_type} '
          f'router -> {args.out_dir}')


if __name__ == '__main__':
    main()
