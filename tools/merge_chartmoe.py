"""Merge a converted ChartMoE model into a self-contained release folder.

    python tools/merge_chartmoe.py HF_DIR SAVE_DIR [--device cpu]

HF_DIR is the output of ``python -m xtuner.tools.model_converters.pth_to_hf``
(``llm_adapter/`` or ``llm``, ``projector/``, ``xtuner_config.py``). XTuner's
``merge`` folds the LoRA adapter into the base LLM named in the config; the
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

from mmengine.config import Config


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
    config_file = osp.join(args.hf_dir, 'xtuner_config.py')
    for needed in (config_file, osp.join(args.hf_dir, 'projector')):
        if not osp.exists(needed):
            sys.exit(f'error: {needed} missing; is {args.hf_dir} a pth_to_hf '
                     'output?')
    cfg = Config.fromfile(config_file)
    tmp_dir = args.save_dir.rstrip('/') + '.tmp'
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    adapter = osp.join(args.hf_dir, 'llm_adapter')
    if osp.isdir(adapter):
        subprocess.run([
            sys.executable, '-m', 'xtuner.tools.model_converters.merge',
            cfg.model.llm.pretrained_model_name_or_path, adapter,
            osp.join(tmp_dir, 'llm'), '--device', args.device,
            '--safe-serialization'
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
    save_visual_encoder(cfg, args.hf_dir, osp.join(tmp_dir, 'visual_encoder'))
    with open(osp.join(tmp_dir, 'chartmoe.json'), 'w') as f:
        json.dump({
            'prompt_template': cfg.prompt_template.to_dict(),
            'visual_select_layer': cfg.model.get('visual_select_layer', -2),
        }, f, indent=1)
    shutil.rmtree(args.save_dir, ignore_errors=True)
    shutil.move(tmp_dir, args.save_dir)
    print(f'ChartMoE release written to {args.save_dir}')


def save_visual_encoder(cfg, hf_dir, save_dir):
    from transformers import CLIPImageProcessor, CLIPVisionModel
    trained = osp.join(hf_dir, 'visual_encoder')
    source = trained if osp.isdir(trained) else (
        cfg.model.visual_encoder.pretrained_model_name_or_path)
    if osp.isdir(osp.join(hf_dir, 'visual_encoder_adapter')):
        sys.exit('error: a LoRA-tuned visual encoder is not supported yet')
    CLIPVisionModel.from_pretrained(source).save_pretrained(save_dir)
    CLIPImageProcessor.from_pretrained(
        cfg.image_processor.pretrained_model_name_or_path).save_pretrained(
            save_dir)


if __name__ == '__main__':
    main()
