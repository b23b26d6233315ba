"""Loading a CLIP vision tower that may carry CuMo's MoE MLPs (the model
code is ``modeling_clip_moe``)."""
import os.path as osp

from .checkpoint import load_hf_folder_state
from .modeling_clip_moe import CONFIG_KEY, upcycle_clip_mlps


def load_clip_vision(path, torch_dtype=None):
    """``CLIPVisionModel.from_pretrained`` that also restores a CLIP saved
    after :func:`upcycle_clip_mlps` (its config carries the MoE setting).
    Every float parameter is cast to ``torch_dtype``."""
    from transformers import CLIPVisionConfig, CLIPVisionModel
    config = CLIPVisionConfig.from_pretrained(path)
    moe = getattr(config, CONFIG_KEY, None)
    if not moe:
        return CLIPVisionModel.from_pretrained(path, torch_dtype=torch_dtype)
    if not osp.isdir(path):
        raise ValueError(f'{path}: an upcycled CLIP must be a local folder')
    clip = CLIPVisionModel(config)
    upcycle_clip_mlps(clip, **moe)
    clip.load_state_dict(load_hf_folder_state(path))
    return clip.to(torch_dtype) if torch_dtype else clip
