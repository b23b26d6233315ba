# Pre-finetune (tiny, CPU), as in CuMo / LibMoE: the whole model trains (LLM,
# CLIP, dense projector from the general projector) on the QA data before the
# MoE stages; point their `pretrained_pth` (and the MoE build's general
# projector) at this stage's checkpoint to upcycle from it.
from mmengine.config import read_base

with read_base():
    from .chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft import *  # noqa: F401,F403,E501

general_projector = tiny_root + 'general_projector'
repeats = 3
lr = 1e-3
model.update(
    freeze_llm=False,
    freeze_visual_encoder=False,
    projector_init=general_projector)
model.pop('llm_lora')
model.pop('moe_projector')
train_dataloader.dataset.times = repeats
optim_wrapper.optimizer.lr = lr
