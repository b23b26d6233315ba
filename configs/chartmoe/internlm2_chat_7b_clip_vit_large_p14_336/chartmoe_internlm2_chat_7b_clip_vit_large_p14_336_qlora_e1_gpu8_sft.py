# ChartMoE stage 3 with QLoRA: the LoRA SFT stage with InternLM2 loaded in
# 4-bit NF4 by bitsandbytes (double quantisation, bf16 compute), as XTuner's
# *_qlora_* configs do; LoRA on the LLM, the MoE connector trained fully, CLIP
# frozen. bitsandbytes 4-bit needs CUDA: without it training stops at once,
# naming `cpu_config`. 8 GPUs:
#   NPROC_PER_NODE=8 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2
import torch
from mmengine.config import read_base
from transformers import BitsAndBytesConfig

with read_base():
    from .chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_lora_e1_gpu8_sft import *  # noqa: F401,F403,E501

# Without CUDA, train this stage with LoRA instead:
cpu_config = 'chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_lora_e1_gpu8_sft'
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
optim_wrapper.dtype = 'bfloat16'
