# ChartMoE SFT (tiny, CPU) + CuMo: every CLIP encoder MLP also becomes a
# top-2-of-4 MoE co-upcycled from its dense MLP and trains (with the MoE
# connector and the LLM LoRA), with CuMo's balance / z losses. Same data and
# schedule as the plain SFT stage.
from mmengine.config import read_base

with read_base():
    from .chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft import *  # noqa: F401,F403,E501

balance_loss_coef = 0.1  # CuMo
z_loss_coef = 0.01  # CuMo
model.update(
    freeze_visual_encoder=False,
    visual_encoder_moe=dict(num_experts=4, num_selected=2),
    balance_loss_coef=balance_loss_coef,
    z_loss_coef=z_loss_coef)
