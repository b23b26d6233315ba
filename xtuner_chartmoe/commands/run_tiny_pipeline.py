"""Run the whole tiny ChartMoE pipeline on CPU, in the current directory.

build tiny default -> align table/json/code -> build MoE connector ->
[chart knowledge, with --knowledge] -> SFT -> pth_to_hf -> merge -> answer a
question about a held-out chart -> ChartQA evaluation with and without PoT
-> expert-routing analysis.

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

ALIGN_CFG = 'chartmoe_tiny_llama_tiny_clip_align_{}_e3_cpu'
SFT_CFG = 'chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft'
KNOWLEDGE_CFG = 'chartmoe_tiny_llama_tiny_clip_lora_e3_cpu_knowledge'
CHARTMOE = [sys.executable, '-m', 'xtuner_chartmoe.commands.cli']  # = `chartmoe`


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

    def report(self):
        print('\n=== Tiny ChartMoE pipeline: artefacts')
        print(f'{"step":24s} {"seconds":>7s}  {"loss first -> last":20s} '
              'artefact')
        for title, artefact, loss, seconds in self.rows:
            print(f'{title:24s} {seconds:7.1f}  {loss:20s} {artefact}')
        print(f'{"total":24s} {sum(r[3] for r in self.rows):7.1f}')


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe pipeline', description=__doc__.splitlines()[0])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--knowledge', action='store_true',
                        help='train the chart-knowledge stage before the SFT')
    args = parser.parse_args(argv)
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    p = Pipeline()
    p.run('build tiny default', ['build-tiny', '--out', 'work_dirs/tiny',
                                 '--seed', str(args.seed)],
          'work_dirs/tiny')
    align_dirs = []
    for expert in ('table', 'json', 'code'):
        config = ALIGN_CFG.format(expert)
        align_dirs.append(work_dir_of(config))
        p.run(f'align {expert}', ['train', config],
              align_dirs[-1], loss_dir=align_dirs[-1])
    moe_dir = 'work_dirs/tiny_moe_connector'
    p.run('build MoE connector', [
        'build-moe', 'diverse', moe_dir,
        '--projectors', 'general=work_dirs/tiny/general_projector',
        *[f'{role}={path}' for role, path in zip(('table', 'json', 'code'),
                                                 align_dirs)]
    ], moe_dir)
    sft_options = []
    if args.knowledge:
        knowledge_dir = work_dir_of(KNOWLEDGE_CFG)
        p.run('knowledge (MoE + LoRA)',
              ['train', KNOWLEDGE_CFG], knowledge_dir,
              loss_dir=knowledge_dir)
        sft_options = ['--cfg-options', 'model.pretrained_pth=' +
                       last_checkpoint(knowledge_dir)]
    sft_dir = work_dir_of(SFT_CFG)
    p.run('SFT (MoE + LoRA)',
          ['train', SFT_CFG, *sft_options], sft_dir,
          loss_dir=sft_dir)
    checkpoint = last_checkpoint(sft_dir)
    hf_dir, release_dir = 'work_dirs/chartmoe_tiny_hf', 'work_dirs/chartmoe_tiny'
    p.run('pth_to_hf', ['convert', 'pth_to_hf', SFT_CFG, checkpoint, hf_dir],
          hf_dir)
    p.run('merge', ['merge', hf_dir, release_dir],
          release_dir)
    with open('work_dirs/tiny/data/test/test_human.json') as f:
        sample = json.load(f)[0]
    print(f"(reference answer: {sample['label']})")
    p.run('chat', ['chat', release_dir, '--image',
                   osp.join('work_dirs/tiny/data', sample['imgname']),
                   '--question', sample['query']], release_dir)
    p.run('ChartQA eval (+PoT)', [
        'eval-chartqa', '--release', release_dir, '--data-root',
        'work_dirs/tiny/data/test', '--image-folder', 'work_dirs/tiny/data',
        '--out', 'work_dirs/eval_tiny', '--max-new-tokens', '64'
    ], 'work_dirs/eval_tiny/results.txt')
    p.run('routing analysis', [
        'analyze-routing', '--release', release_dir, '--data',
        'work_dirs/tiny/data/test/test_human.json', '--image-folder',
        'work_dirs/tiny/data', '--out', 'work_dirs/routing_tiny'
    ], 'work_dirs/routing_tiny')
    p.report()


if __name__ == '__main__':
    sys.exit(main())
