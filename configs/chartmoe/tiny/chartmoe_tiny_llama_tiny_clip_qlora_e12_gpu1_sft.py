# ChartMoE stage 3 (tiny) with QLoRA: the tiny LoRA SFT with the LLM loaded in
# 4-bit NF4 by bitsandbytes (double quantisation, bf16 compute); LoRA on the
# LLM, the MoE connector trained fully. A quick QLoRA check on one GPU:
#   xtuner train THIS_CONFIG
# bitsandbytes 4-bit needs CUDA: without it training stops at once, naming
# `cpu_config`.
import torch
from mmengine.config import read_base
from transformers import BitsAndBytesConfig

with read_base():
    from .chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft import *  # noqa: F401,F403,E501

# Without CUDA, train this stage with LoRA instead:
cpu_config = 'chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft'
model.update(cpu_config=cpu_config)
model.llm.update(
    torch_dtype=torch.bfloat16,
    quantization_config=dict(
        type=BitsAndBytesConfig,
        load_in_4bit=True,
        load_in_8bit=False,
        llm_int8_threshold=6.0,
        llm_int8_has_fp16_weight=False,
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_quant_type='nf4'))
env_cfg.dist_cfg.backend = 'nccl'
