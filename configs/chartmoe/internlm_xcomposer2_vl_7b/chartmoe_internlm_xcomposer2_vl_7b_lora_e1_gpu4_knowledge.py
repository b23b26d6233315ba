# ChartMoE on InternLM-XComposer2-VL-7B, stage 2: chart knowledge ("High-
# Quality Knowledge Learning", ChartMoE arXiv 2409.03277; the reference code
# leaves it out). The MoE connector trains fully and the LLM with LoRA, as in
# the SFT stage (same model and schedule), on the alignment data mixed: chart
# -> table / JSON / code at the align stages' counts. The SFT then continues
# from this stage's checkpoint (its `pretrained_pth`). 4 GPUs:
#   NPROC_PER_NODE=4 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2
from mmengine.config import read_base

with read_base():
    from .chartmoe_internlm_xcomposer2_vl_7b_lora_e1_gpu4_sft import *  # noqa: F401,F403,E501

data_mix = [('chart2table.json', 500), ('chart2json.json', 200),
            ('chart2code.json', 300)]
evaluation_inputs = ['Convert the chart into a data table.']

train_dataset.data_mix = data_mix
train_dataloader.dataset = train_dataset
for hook in custom_hooks:
    if hook.type is IXC2EvaluateChatHook:
        hook.evaluation_inputs = evaluation_inputs
