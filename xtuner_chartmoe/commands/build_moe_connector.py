"""Build the ChartMoE MoE connector, or move it to and from ChartMoE's file.

    # diverse (ChartMoE): general + the three aligned projectors, by role
    chartmoe build-moe diverse OUT_DIR --projectors \\
        general=GENERAL table=TABLE json=JSON code=CODE [--top-k 2]
    # upcycle: the general projector copied into every expert
    chartmoe build-moe upcycle OUT_DIR --projectors GENERAL
    # random: fresh experts with the general projector's sizes
    chartmoe build-moe random OUT_DIR --projectors GENERAL
    # ChartMoE's own mlp_moe.pth (moe_construction.py) -> our folder, and back
    chartmoe build-moe import OUT_DIR --checkpoint mlp_moe.pth
    chartmoe build-moe export CONNECTOR_DIR --checkpoint OUT.pth
    # InternLM-XComposer2 (ChartMoE's own recipe): the base release's
    # vision_proj + the three aligned ones, and ChartMoE's mlp_moe.pth too
    chartmoe build-moe diverse OUT_DIR --projectors \\
        general=internlm/internlm-xcomposer2-vl-7b table=TABLE_HF_DIR \\
        json=.../mm_mlp.bin code=CODE_WORK_DIR --mlp-moe OUT_DIR/mlp_moe.pth

A projector is an XTuner ``projector/`` folder, a checkpoint ``.pth`` / a
DeepSpeed folder, or a training work dir (its last checkpoint); for
InternLM-XComposer2 also a release folder or offline hub id (its
``vision_proj``), ChartMoE's ``mm_mlp.bin`` (``vision_proj.{0,2}.*``, what
its align stage saves) or the ``pth_to_hf`` output of an align stage (which
holds one). ``ROLE=PATH`` names the expert (the names label logs and plots
and decide the order of an export); plain paths in ``diverse`` are general,
table, json, code in that order. OUT_DIR is written with
``save_pretrained`` (weights + code) and reloads with
``AutoModel.from_pretrained(OUT_DIR, trust_remote_code=True)``; point
``moe_projector=dict(pretrained=OUT_DIR)`` of a stage config at it;
``--mlp-moe PATH`` writes it as ChartMoE's ``mlp_moe.pth`` too.
``import`` reads the reference's experts in the order general, table, json,
code (``--expert-names`` to name them otherwise); ``export`` writes them in
that order whatever their positions here, from our folder, the ``pth_to_hf``
output of an IXC2 MoE stage or a ChartMoE release folder / hub id. Every
load checks that each tensor finds its place; nothing is written when one
does not.
"""
import argparse
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.fileio import atomic_directory
from xtuner_chartmoe.model import (CHARTMOE_EXPERT_NAMES, ROUTERS,
                                   build_moe_projector, export_reference,
                                   load_connector, write_reference)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe build-moe', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    modes = parser.add_subparsers(dest='mode', required=True)
    for mode in ('diverse', 'upcycle', 'random'):
        build = modes.add_parser(mode, help=f'build a connector ({mode})')
        build.add_argument('out_dir')
        build.add_argument('--projectors', nargs='+', required=True,
                           metavar='[ROLE=]PATH')
        build.add_argument('--num-experts', type=int, default=4,
                           help='upcycle/random (diverse: one per projector)')
        build.add_argument('--top-k', type=int, default=2)
        build.add_argument('--router', default='softmax',
                           choices=sorted(ROUTERS))
        build.add_argument('--expert-names', nargs='+')
        build.add_argument('--seed', type=int, default=0)
    imported = modes.add_parser('import', help="from ChartMoE's mlp_moe.pth")
    imported.add_argument('out_dir')
    imported.add_argument('--checkpoint', required=True)
    imported.add_argument('--expert-names', nargs='+',
                          default=list(CHARTMOE_EXPERT_NAMES))
    for written in (*(modes.choices[m] for m in ('diverse', 'upcycle',
                                                 'random')), imported):
        written.add_argument('--mlp-moe', metavar='PATH',
                             help="also write ChartMoE's mlp_moe.pth here")
    exported = modes.add_parser('export', help="to ChartMoE's mlp_moe.pth")
    exported.add_argument('connector_dir')
    exported.add_argument('--checkpoint', required=True)
    return parser.parse_args(argv)


def split_roles(items):
    """``['general=a', 'table=b']`` -> (paths, names); plain paths -> names
    None. Mixing both is an error."""
    roles = [item.split('=', 1) if '=' in item else [None, item]
             for item in items]
    names = [role for role, _ in roles]
    if any(names) and not all(names):
        raise ValueError('give every projector as ROLE=PATH, or none')
    return [path for _, path in roles], (names if all(names) else None)


def build(args):
    paths, names = split_roles(args.projectors)
    if names and args.expert_names:
        raise ValueError('give expert names as ROLE=PATH or --expert-names, '
                         'not both')
    return build_moe_projector(
        args.mode, paths, num_experts=args.num_experts,
        num_selected=args.top_k, router_type=args.router,
        expert_names=names or args.expert_names, seed=args.seed)


def main(argv=None):
    args = parse_args(argv)
    if args.mode == 'export':
        target = export_reference(args.connector_dir, args.checkpoint)
        print(f"exported experts {', '.join(CHARTMOE_EXPERT_NAMES)} "
              f'(in that order) -> {target}')
        return 0
    moe = (load_connector(args.checkpoint, args.expert_names)
           if args.mode == 'import' else build(args))
    with atomic_directory(args.out_dir) as tmp:
        moe.save_pretrained(tmp)
    cfg = moe.config
    print(f'MoE connector ({args.mode}): {cfg.num_experts} experts '
          f'{cfg.expert_names}, {cfg.visual_hidden_size} -> '
          f'{cfg.llm_hidden_size}, top-{cfg.num_selected}, {cfg.router_type} '
          f'router -> {args.out_dir}')
    if args.mlp_moe:
        path = write_reference(moe, args.mlp_moe)
        print(f"ChartMoE's mlp_moe.pth -> {path}")
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
