"""A self-contained ChartMoE release from a ``pth_to_hf`` output.

``pth_to_hf`` (``ChartMoEModel.to_hf``) writes XTuner's layout plus
:data:`HF_MANIFEST` (what the merge needs, resolved from the config);
:func:`write_release` folds the LoRA adapter into the LLM with XTuner's own
``merge`` and writes::

    llm/             merged LLM + tokenizer
    projector/       MoE connector (weights + code)
    visual_encoder/  vision tower (CuMo MoE included) + image processor
    chartmoe.json    prompt template, visual_select_layer (RELEASE_MANIFEST)

which ``xtuner_chartmoe.families.llava.chat.LLaVAChat.from_release`` loads.
The ``pth_to_hf`` output of an IXC2 model (its manifest
``chartmoe_ixc2_hf.json``) becomes the released ChartMoE layout instead
(:func:`~.ixc2_release.merge_ixc2_release`).
"""
import json
import os.path as osp
import shutil
import subprocess
import sys

from xtuner_chartmoe.fileio import atomic_directory, atomic_write_json
from xtuner_chartmoe.model.chartmoe import HF_MANIFEST

RELEASE_MANIFEST = 'chartmoe.json'


def read_hf_manifest(hf_dir):
    """The manifest of a ``pth_to_hf`` output; errors say what is missing."""
    path = osp.join(hf_dir, HF_MANIFEST)
    for needed in (path, osp.join(hf_dir, 'projector')):
        if not osp.exists(needed):
            raise FileNotFoundError(
                f'{needed} missing; is {hf_dir} a pth_to_hf output of a '
                'ChartMoEModel config?')
    with open(path) as f:
        return json.load(f)


def write_release(hf_dir, save_dir, device='cpu'):
    """Merge ``hf_dir`` into the release folder ``save_dir`` (written beside
    it, then renamed into place: an interrupted merge leaves nothing)."""
    from .ixc2_release import IXC2_HF_MANIFEST, merge_ixc2_release
    if osp.isfile(osp.join(hf_dir, IXC2_HF_MANIFEST)):
        return merge_ixc2_release(hf_dir, save_dir, device)
    manifest = read_hf_manifest(hf_dir)
    if osp.isdir(osp.join(hf_dir, 'visual_encoder_adapter')):
        raise ValueError('a LoRA-tuned visual encoder is not supported yet')
    with atomic_directory(save_dir) as tmp:
        adapter = osp.join(hf_dir, 'llm_adapter')
        if osp.isdir(adapter):
            subprocess.run([
                sys.executable, '-m', 'xtuner.tools.model_converters.merge',
                manifest['llm'], adapter, osp.join(tmp, 'llm'), '--device',
                device, '--safe-serialization'
            ], check=True)
        else:  # LLM fully fine-tuned: pth_to_hf wrote it at the top level
            from transformers import AutoModelForCausalLM, AutoTokenizer
            for loader in (AutoModelForCausalLM, AutoTokenizer):
                loader.from_pretrained(hf_dir, trust_remote_code=True
                                       ).save_pretrained(osp.join(tmp, 'llm'))
        shutil.copytree(osp.join(hf_dir, 'projector'),
                        osp.join(tmp, 'projector'))
        save_visual_encoder(manifest, hf_dir, osp.join(tmp, 'visual_encoder'))
        atomic_write_json(osp.join(tmp, RELEASE_MANIFEST),
                          {k: manifest[k] for k in ('prompt_template',
                                                    'visual_select_layer')})
    return save_dir


def save_visual_encoder(manifest, hf_dir, save_dir):
    """The trained vision tower if pth_to_hf wrote one (CLIP MoE included),
    else the base one, with its image processor."""
    from transformers import CLIPImageProcessor

    from xtuner_chartmoe.model.clip_vision_loader import load_clip_vision
    trained = osp.join(hf_dir, 'visual_encoder')
    source = trained if osp.isdir(trained) else manifest['visual_encoder']
    load_clip_vision(source).save_pretrained(save_dir)
    CLIPImageProcessor.from_pretrained(
        manifest['image_processor']).save_pretrained(save_dir)
