# Pre-finetune, as in CuMo / LibMoE: the whole model trains (InternLM2, CLIP,
# dense projector from the general projector) on the SFT data before the MoE
# stages; point their `pretrained_pth` (and the MoE build's general projector)
# at this stage's checkpoint to upcycle from it. Full 7B training: 8 GPUs with
#   NPROC_PER_NODE=8 xtuner train THIS_CONFIG --deepspeed deepspeed_zero3
from mmengine.config import read_base

with read_base():
    from .chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_lora_e1_gpu8_sft import *  # noqa: F401,F403,E501

general_projector = './pretrained/llava-internlm2-7b-pretrain/iter_2181.pth'
lr = 2e-5
model.update(
    freeze_llm=False,
    freeze_visual_encoder=False,
    projector_init=general_projector)
model.pop('llm_lora')
model.pop('moe_projector')
optim_wrapper.optimizer.lr = lr
