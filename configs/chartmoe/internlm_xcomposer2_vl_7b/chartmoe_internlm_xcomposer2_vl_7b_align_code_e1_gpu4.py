# ChartMoE on InternLM-XComposer2-VL-7B, stage 1: align the *code* expert
# (chart -> code; ChartMoE's scripts/code_align.sh, data/code_align.txt =
# ./data/chart2code.json 300). Identical to the table stage except for its
# data. 4 GPUs, ZeRO-2:
#   NPROC_PER_NODE=4 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2
from mmengine.config import read_base

with read_base():
    from .chartmoe_internlm_xcomposer2_vl_7b_align_table_e1_gpu4 import *  # noqa: F401,F403,E501

expert = 'code'
data_mix = [(f'chart2{expert}.json', 300)]
evaluation_inputs = ['Write the Python matplotlib code that draws this chart.']

train_dataset.data_mix = data_mix
train_dataloader.dataset = train_dataset
for hook in custom_hooks:
    if hook.type is IXC2EvaluateChatHook:
        hook.evaluation_inputs = evaluation_inputs
