"""Run the whole tiny ChartMoE pipeline on CPU, in the current directory.

build tiny default -> align table/json/code -> build MoE connector ->
[chart knowledge, with --knowledge] -> SFT -> pth_to_hf -> merge -> answer a
question about a held-out chart -> ChartQA evaluation with and without PoT
-> expert-routing analysis.

``--family llava`` (default): XTuner's LLaVA (InternLM2-style tiny LLM +
tiny CLIP). ``--family ixc2``: ChartMoE's own recipe on a tiny
InternLM-XComposer2 (arXiv 2409.03277 on arXiv 2401.16420): the three align
stages train IXC2's ``vision_proj``, the connector is built from the base
release's ``vision_proj`` and theirs (also as ChartMoE's ``mlp_moe.pth``,
which the SFT loads, as ChartMoE's ``sft.sh`` does), the merge writes the
released ChartMoE layout and the evaluation scores with our protocol and
ChartMoE's.

Every step is the `chartmoe` command a user would type (printed before it
runs; `chartmoe train` is XTuner's train); all outputs go to ./work_dirs.
Ends with a table of artefacts, losses and times.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from xtuner_chartmoe.engine.run_log import last_checkpoint, logged_scalars

CHARTMOE = [sys.executable, '-m', 'xtuner_chartmoe.commands.cli']  # = `chartmoe`
# What differs between the families: the tiny default, the configs, the
# dense projector the general expert starts from, the output folders.
FAMILIES = {
    'llava': dict(
        tiny='work_dirs/tiny', build=[],
        align='chartmoe_tiny_llama_tiny_clip_align_{}_e3_cpu',
        sft='chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft',
        knowledge='chartmoe_tiny_llama_tiny_clip_lora_e3_cpu_knowledge',
        general='work_dirs/tiny/general_projector',
        connector='work_dirs/tiny_moe_connector', mlp_moe=None,
        hf='work_dirs/chartmoe_tiny_hf', release='work_dirs/chartmoe_tiny',
        eval='work_dirs/eval_tiny', protocol='ours',
        routing='work_dirs/routing_tiny'),
    'ixc2': dict(
        tiny='work_dirs/tiny_ixc2', build=['--family', 'ixc2'],
        align='chartmoe_tiny_ixc2_align_{}_e3_cpu',
        sft='chartmoe_tiny_ixc2_lora_e12_cpu_sft', knowledge=None,
        general='work_dirs/tiny_ixc2/ixc2',
        connector='work_dirs/tiny_ixc2_moe_connector',
        mlp_moe='work_dirs/tiny_ixc2_mlp_moe.pth',
        hf='work_dirs/chartmoe_tiny_ixc2_hf',
        release='work_dirs/chartmoe_tiny_ixc2',
        eval='work_dirs/eval_tiny_ixc2', protocol='both',
        routing='work_dirs/routing_tiny_ixc2'),
}


def work_dir_of(config):
    return osp.join('work_dirs', config)


def losses_of(work_dir):
    """(first, last) training loss logged in the newest run of work_dir."""
    rows = logged_scalars(work_dir)
    return rows[0]['loss'], rows[-1]['loss']


class Pipeline:
    def __init__(self):
        self.rows = []

    def run(self, title, args, artefact, loss_dir=None):
        print(f'\n=== {title}\n$ chartmoe {" ".join(args)}', flush=True)
        start = time.time()
        subprocess.run(CHARTMOE + args, check=True)
        seconds = time.time() - start
        loss = '%.3f -> %.3f' % losses_of(loss_dir) if loss_dir else ''
        self.rows.append((title, artefact, loss, seconds))

    def report(self, family):
        print(f'\n=== Tiny ChartMoE pipeline ({family}): artefacts')
        print(f'{"step":24s} {"seconds":>7s}  {"loss first -> last":20s} '
              'artefact')
        for title, artefact, loss, seconds in self.rows:
            print(f'{title:24s} {seconds:7.1f}  {loss:20s} {artefact}')
        print(f'{"total":24s} {sum(r[3] for r in self.rows):7.1f}')


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe pipeline', description=__doc__.splitlines()[0])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--family', choices=sorted(FAMILIES),
                        default='llava')
    parser.add_argument('--knowledge', action='store_true',
                        help='train the chart-knowledge stage before the SFT '
                        '(llava)')
    args = parser.parse_args(argv)
    f = FAMILIES[args.family]
    if args.knowledge and not f['knowledge']:
        parser.error(f'--knowledge: the {args.family} family has no tiny '
                     'knowledge config')
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    p = Pipeline()
    p.run('build tiny default', ['build-tiny', *f['build'], '--out',
                                 f['tiny'], '--seed', str(args.seed)],
          f['tiny'])
    align_dirs = []
    for expert in ('table', 'json', 'code'):
        config = f['align'].format(expert)
        align_dirs.append(work_dir_of(config))
        p.run(f'align {expert}', ['train', config],
              align_dirs[-1], loss_dir=align_dirs[-1])
    mlp_moe = ['--mlp-moe', f['mlp_moe']] if f['mlp_moe'] else []
    p.run('build MoE connector', [
        'build-moe', 'diverse', f['connector'],
        '--projectors', f'general={f["general"]}',
        *[f'{role}={path}' for role, path in zip(('table', 'json', 'code'),
                                                 align_dirs)], *mlp_moe
    ], ' + '.join([f['connector'], *mlp_moe[1:]]))
    sft_options = []
    if f['mlp_moe']:  # the SFT starts from ChartMoE's file
        sft_options = ['model.moe_projector.pretrained=' + f['mlp_moe']]
    if args.knowledge:
        knowledge_dir = work_dir_of(f['knowledge'])
        p.run('knowledge (MoE + LoRA)',
              ['train', f['knowledge']], knowledge_dir,
              loss_dir=knowledge_dir)
        sft_options.append('model.pretrained_pth=' +
                           last_checkpoint(knowledge_dir))
    sft_dir = work_dir_of(f['sft'])
    p.run('SFT (MoE + LoRA)',
          ['train', f['sft'], *(['--cfg-options', *sft_options]
                                if sft_options else [])], sft_dir,
          loss_dir=sft_dir)
    checkpoint = last_checkpoint(sft_dir)
    p.run('pth_to_hf', ['convert', 'pth_to_hf', f['sft'], checkpoint,
                        f['hf']], f['hf'])
    p.run('merge', ['merge', f['hf'], f['release']], f['release'])
    data = osp.join(f['tiny'], 'data')
    with open(osp.join(data, 'test', 'test_human.json')) as fp:
        sample = json.load(fp)[0]
    print(f"(reference answer: {sample['label']})")
    p.run('chat', ['chat', f['release'], '--image',
                   osp.join(data, sample['imgname']),
                   '--question', sample['query']], f['release'])
    p.run(f'ChartQA eval (+PoT, {f["protocol"]})', [
        'eval-chartqa', '--release', f['release'], '--data-root',
        osp.join(data, 'test'), '--image-folder', data,
        '--out', f['eval'], '--max-new-tokens', '64',
        '--protocol', f['protocol']
    ], osp.join(f['eval'], 'results.txt'))
    p.run('routing analysis', [
        'analyze-routing', '--release', f['release'], '--data',
        osp.join(data, 'test', 'test_human.json'), '--image-folder', data,
        '--out', f['routing']
    ], f['routing'])
    p.report(args.family)


if __name__ == '__main__':
    sys.exit(main())
