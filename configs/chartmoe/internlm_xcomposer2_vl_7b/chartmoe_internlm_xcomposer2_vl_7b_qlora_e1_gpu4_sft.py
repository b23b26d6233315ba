# ChartMoE on InternLM-XComposer2-VL-7B, stage 3 with QLoRA: the LoRA SFT
# stage with the LLM's base linears in 4-bit NF4 by bitsandbytes (double
# quantisation, bf16 compute; QLoRA, arXiv 2305.14314), as XTuner's *_qlora_*
# configs do; the Partial LoRA and the MoE connector stay in bf16. bitsandbytes
# 4-bit needs CUDA: without it training stops at once, naming `cpu_config`.
# 4 GPUs:
#   NPROC_PER_NODE=4 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2
import torch
from mmengine.config import read_base
from transformers import BitsAndBytesConfig

with read_base():
    from .chartmoe_internlm_xcomposer2_vl_7b_lora_e1_gpu4_sft import *  # noqa: F401,F403,E501

# Without CUDA, train this stage with LoRA instead:
cpu_config = 'chartmoe_internlm_xcomposer2_vl_7b_lora_e1_gpu4_sft'
model.cpu_config = cpu_config
model.llm.quantization_config = dict(
    type=BitsAndBytesConfig,
    load_in_4bit=True,
    load_in_8bit=False,
    llm_int8_threshold=6.0,
    llm_int8_has_fp16_weight=False,
    bnb_4bit_compute_dtype=torch.bfloat16,
    bnb_4bit_use_double_quant=True,
    bnb_4bit_quant_type='nf4')
