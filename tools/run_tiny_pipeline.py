"""Run the whole tiny ChartMoE pipeline on CPU, from the repository root.

build tiny default -> align table/json/code -> build MoE connector -> SFT
-> pth_to_hf -> merge -> answer a question about a held-out chart -> ChartQA
evaluation with and without PoT -> expert-routing analysis.

Every step is the command a user would type (printed before it runs); all
outputs go to ./work_dirs. Ends with a table of artefacts, losses and times.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

CFG_DIR = 'configs/chartmoe/tiny'
ALIGN_CFG = CFG_DIR + '/chartmoe_tiny_llama_tiny_clip_align_{}_e3_cpu.py'
SFT_CFG = CFG_DIR + '/chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft.py'
PY = sys.executable


def work_dir_of(config):
    return osp.join('work_dirs', osp.splitext(osp.basename(config))[0])


def losses_of(work_dir):
    """(first, last) training loss logged in the newest run of work_dir."""
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))
    with open(runs[-1]) as f:
        losses = [json.loads(line)['loss'] for line in f if '"loss"' in line]
    return losses[0], losses[-1]


class Pipeline:
    def __init__(self):
        self.rows = []

    def run(self, title, cmd, artefact, loss_dir=None):
        print(f'\n=== {title}\n$ {" ".join(cmd)}', flush=True)
        start = time.time()
        subprocess.run(cmd, check=True)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if not osp.isdir(CFG_DIR):
        sys.exit('run this from the repository root')
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    p = Pipeline()
    p.run('build tiny default', [PY, 'tools/build_tiny_default.py', '--out',
                                 'work_dirs/tiny', '--seed', str(args.seed)],
          'work_dirs/tiny')
    align_dirs = []
    for expert in ('table', 'json', 'code'):
        config = ALIGN_CFG.format(expert)
        align_dirs.append(work_dir_of(config))
        p.run(f'align {expert}', [PY, '-m', 'xtuner.tools.train', config],
              align_dirs[-1], loss_dir=align_dirs[-1])
    moe_dir = 'work_dirs/tiny_moe_connector'
    p.run('build MoE connector', [
        PY, 'tools/build_moe_connector.py', 'diverse', moe_dir,
        '--projectors', 'work_dirs/tiny/general_projector', *align_dirs
    ], moe_dir)
    sft_dir = work_dir_of(SFT_CFG)
    p.run('SFT (MoE + LoRA)', [PY, '-m', 'xtuner.tools.train', SFT_CFG],
          sft_dir, loss_dir=sft_dir)
    with open(osp.join(sft_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    hf_dir, release_dir = 'work_dirs/chartmoe_tiny_hf', 'work_dirs/chartmoe_tiny'
    p.run('pth_to_hf', [PY, '-m', 'xtuner.tools.model_converters.pth_to_hf',
                        SFT_CFG, checkpoint, hf_dir], hf_dir)
    p.run('merge', [PY, 'tools/merge_chartmoe.py', hf_dir, release_dir],
          release_dir)
    with open('work_dirs/tiny/data/test/test_human.json') as f:
        sample = json.load(f)[0]
    print(f"(reference answer: {sample['label']})")
    p.run('chat', [PY, 'tools/chat.py', release_dir, '--image',
                   osp.join('work_dirs/tiny/data', sample['imgname']),
                   '--question', sample['query']], release_dir)
    p.run('ChartQA eval (+PoT)', [
        PY, 'tools/eval_chartqa.py', '--release', release_dir, '--data-root',
        'work_dirs/tiny/data/test', '--image-folder', 'work_dirs/tiny/data',
        '--out', 'work_dirs/eval_tiny', '--max-new-tokens', '64'
    ], 'work_dirs/eval_tiny/results.txt')
    p.run('routing analysis', [
        PY, 'tools/analyze_routing.py', '--release', release_dir, '--data',
        'work_dirs/tiny/data/test/test_human.json', '--image-folder',
        'work_dirs/tiny/data', '--out', 'work_dirs/routing_tiny'
    ], 'work_dirs/routing_tiny')
    p.report()


if __name__ == '__main__':
    main()
