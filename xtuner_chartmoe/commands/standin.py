"""Real-architecture stand-ins: build them, run the real configs on them.

    # InternLM2-chat-7B / CLIP-ViT-L/14-336 widths, 2 layers each, random
    chartmoe standin build work_dirs/standin [--llm-layers 2]
    # a real config, unchanged, from that folder (on a CPU: DeepSpeed ZeRO-2
    # with fp16/bf16 off, fp32 LLM, batch 1, 2 records per data set)
    chartmoe standin train work_dirs/standin CONFIG  # path or name
    # any command in the stand-in environment (hub ids -> stand-ins)
    chartmoe standin run work_dirs/standin -- chartmoe chat ...
    # full-size parameter counts of configs, built on the meta device
    chartmoe standin counts configs/chartmoe/internlm2_*/*.py
    # InternLM-XComposer2-VL-7B and the released ChartMoE (their hub ids)
    chartmoe standin build work_dirs/standin_ixc2 --family ixc2
    chartmoe standin run work_dirs/standin_ixc2 -- chartmoe chat \
        IDEA-FinAI/chartmoe --image chart.png --question "..."
    chartmoe standin counts --family ixc2   # full size, meta device
    # and the trainable sets of IXC2 stage configs
    chartmoe standin counts --family ixc2 \
        configs/chartmoe/internlm_xcomposer2_vl_7b/chartmoe_*.py

``train`` prints and runs ``torchrun ... -m xtuner.tools.train CONFIG
--launcher pytorch --deepspeed deepspeed_zero2 --cfg-options ...`` in the
stand-in folder with ``HF_HUB_CACHE`` pointing at its hub cache; see
``xtuner_chartmoe/devkit/standin.py`` (``families/ixc2/standin.py``) for
what is built and which options are set.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys

from xtuner_chartmoe.commands.cli import resolve_config
from xtuner_chartmoe.devkit.standin import (build_standins, cpu_cfg_options,
                                     full_size_table, standin_env)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='chartmoe standin', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    build = commands.add_parser('build', help='write the stand-in folder')
    build.add_argument('out_dir')
    build.add_argument('--llm-layers', type=int, default=2)
    build.add_argument('--vision-layers', type=int, default=2)
    build.add_argument('--num-charts', type=int, default=8)
    build.add_argument('--family', choices=['llava', 'ixc2'], default='llava',
                       help='llava: InternLM2-chat-7B + CLIP-ViT-L/14-336 '
                       'and the data of the real configs; ixc2: '
                       'InternLM-XComposer2-VL-7B, its Enhanced copy and the '
                       'released ChartMoE checkpoints')
    train = commands.add_parser('train', help='train a real config on them')
    train.add_argument('out_dir')
    train.add_argument('config')
    train.add_argument('--nproc', type=int, default=1)
    train.add_argument('--deepspeed', default='deepspeed_zero2')
    train.add_argument('--samples', type=int, default=2,
                       help='records per data set (CPU)')
    train.add_argument('--max-iters', type=int,
                       help='stop after this many iterations (CPU)')
    train.add_argument('--gpu', action='store_true',
                       help='no CPU options (the config as it is)')
    run = commands.add_parser('run', help='a command in their environment')
    run.add_argument('out_dir')
    counts = commands.add_parser(
        'counts', help='full-size parameter counts of configs (meta device)')
    counts.add_argument('configs', nargs='*')
    counts.add_argument('--family', choices=['llava', 'ixc2'], default='llava',
                        help='ixc2: IXC2-VL-7B and ChartMoE as released')
    return parser.parse_args(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index('--') if '--' in argv else len(argv)
    args, rest = parse_args(argv[:split]), argv[split + 1:]
    if args.command == 'counts' and args.family == 'ixc2':
        from xtuner_chartmoe.families.ixc2.standin import (build_on_meta,
                                                           parameter_counts,
                                                           stage_counts)
        for name, chartmoe in (('InternLM-XComposer2-VL-7B', False),
                               ('ChartMoE', True)):
            counts = parameter_counts(build_on_meta(chartmoe))
            print(f'{name}: ' + ', '.join(f'{k} {v:,}'
                                          for k, v in counts.items()))
        if args.configs:
            print(f'| {"config":58s} | {"total":>13s} | {"trainable":>11s} '
                  f'| {"vision_proj":>11s} | {"LoRA":>11s} |')
            print(f'|{"-" * 60}|{"-" * 15}|{"-" * 13}|{"-" * 13}|'
                  f'{"-" * 13}|')
        for config in args.configs:
            c = stage_counts(resolve_config(config))
            name = osp.basename(config).replace('.py', '')
            print(f'| {name:58s} | {c["total"]:13,} | {c["trainable"]:11,} '
                  f'| {c["vision_proj"]:11,} | {c["lora"]:11,} |')
        return 0
    if args.command == 'counts':
        if not args.configs:
            raise ValueError('counts needs config files (or --family ixc2)')
        print(full_size_table(args.configs))
        return 0
    if args.command == 'build' and args.family == 'ixc2':
        from xtuner_chartmoe.families.ixc2.standin import build_ixc2_standins
        paths = build_ixc2_standins(args.out_dir, args.llm_layers,
                                    args.vision_layers)
        for name, path in paths.items():
            print(f'{name:36s} {path}')
        return 0
    if args.command == 'build':
        paths = build_standins(args.out_dir, args.llm_layers,
                               args.vision_layers, args.num_charts)
        for name, path in paths.items():
            print(f'{name:18s} {path}')
        return 0
    if not osp.isdir(osp.join(args.out_dir, 'hf_cache')):
        print(f'error: {args.out_dir} has no hf_cache/; run `build` first',
              file=sys.stderr)
        return 1
    if args.command == 'run':
        cmd = rest
    else:
        from mmengine.config import Config
        config = osp.abspath(resolve_config(args.config))
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node', str(args.nproc), '-m', 'xtuner.tools.train',
               config, '--launcher', 'pytorch', '--deepspeed', args.deepspeed]
        extra = rest  # more options for xtuner train, after --
        options = [] if args.gpu else cpu_cfg_options(
            Config.fromfile(config), args.samples, args.max_iters, args.nproc)
        if '--cfg-options' in extra:  # the user's options win (they follow)
            at = extra.index('--cfg-options') + 1
            extra[at:at] = options
        elif options:
            extra += ['--cfg-options', *options]
        cmd += extra
    env = standin_env(args.out_dir)
    if args.command == 'train':  # mmengine would pin distributed runs to 1
        threads = str(max(1, (os.cpu_count() or 1) // args.nproc))
        env.setdefault('OMP_NUM_THREADS', threads)
        env.setdefault('MKL_NUM_THREADS', threads)
    print('$ ' + ' '.join(cmd), flush=True)
    return subprocess.run(cmd, cwd=args.out_dir, env=env).returncode


if __name__ == '__main__':
    sys.exit(main())
