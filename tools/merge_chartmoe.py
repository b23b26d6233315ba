"""Merge a converted ChartMoE model into a self-contained release folder.

    python tools/merge_chartmoe.py HF_DIR SAVE_DIR [--device cpu]

HF_DIR is the output of ``python -m xtuner.tools.model_converters.pth_to_hf``
(``llm_adapter/`` or the LLM, ``projector/``, ``chartmoe_hf.json``). XTuner's
``merge`` folds the LoRA adapter into the base LLM named there; the
MoE connector and the visual encoder are saved next to it with a
``chartmoe.json`` manifest (prompt template, visual_select_layer), which
``xtuner_chartmoe.inference.ChartMoEChat`` reads.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('hf_dir')
    parser.add_argument('save_dir')
    parser.add_argument('--device', default='cpu',
                        choices=('cpu', 'cuda', 'auto'))
    return parser.parse_args()


def main():
    args = parse_args()
    manifest_file = osp.join(args.hf_dir, 'chartmoe_hf.json')
    for needed in (manifest_file, osp.join(args.hf_dir, 'projector')):
        if not osp.exists(needed):
            sys.exit(f'error: {needed} missing; is {args.hf_dir} a pth_to_hf '
                     'output of a ChartMoEModel config?')
    with open(manifest_file) as f:
        manifest = json.load(f)
    tmp_dir = args.save_dir.rstrip('/') + '.tmp'
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    adapter = osp.join(args.hf_dir, 'llm_adapter')
    if osp.isdir(adapter):
        subprocess.run([
            sys.executable, '-m', 'xtuner.tools.model_converters.merge',
            manifest['llm'], adapter, osp.join(tmp_dir, 'llm'), '--device',
            args.device, '--safe-serialization'
        ], check=True)
    else:  # LLM fully fine-tuned: pth_to_hf wrote it at the top level
        from transformers import AutoModelForCausalLM, AutoTokenizer
        AutoModelForCausalLM.from_pretrained(
            args.hf_dir, trust_remote_code=True).save_pretrained(
                osp.join(tmp_dir, 'llm'))
        AutoTokenizer.from_pretrained(
            args.hf_dir, trust_remote_code=True).save_pretrained(
                osp.join(tmp_dir, 'llm'))
    shutil.copytree(osp.join(args.hf_dir, 'projector'),
                    osp.join(tmp_dir, 'projector'))
    save_visual_encoder(manifest, args.hf_dir,
                        osp.join(tmp_dir, 'visual_encoder'))
    with open(osp.join(tmp_dir, 'chartmoe.json'), 'w') as f:
        json.dump({k: manifest[k] for k in ('prompt_template',
                                            'visual_select_layer')}, f,
                  indent=1)
    shutil.rmtree(args.save_dir, ignore_errors=True)
    shutil.move(tmp_dir, args.save_dir)
    print(f'ChartMoE release written to {args.save_dir}')


def save_visual_encoder(manifest, hf_dir, save_dir):
    """The trained vision tower if pth_to_hf wrote one (CLIP MoE included),
    else the base one, with its image processor."""
    from transformers import CLIPImageProcessor

    from xtuner_chartmoe.model import load_clip_vision
    if osp.isdir(osp.join(hf_dir, 'visual_encoder_adapter')):
        sys.exit('error: a LoRA-tuned visual encoder is not supported yet')
    trained = osp.join(hf_dir, 'visual_encoder')
    source = trained if osp.isdir(trained) else manifest['visual_encoder']
    load_clip_vision(source).save_pretrained(save_dir)
    CLIPImageProcessor.from_pretrained(
        manifest['image_processor']).save_pretrained(save_dir)


if __name__ == '__main__':
    main()
