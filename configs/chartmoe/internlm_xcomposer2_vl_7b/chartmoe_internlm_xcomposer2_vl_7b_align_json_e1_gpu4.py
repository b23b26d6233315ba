# ChartMoE on InternLM-XComposer2-VL-7B, stage 1: align the *json* expert
# (chart -> JSON; ChartMoE's scripts/json_align.sh, data/json_align.txt =
# ./data/chart2json.json 200). Identical to the table stage except for its
# data. 4 GPUs, ZeRO-2:
#   NPROC_PER_NODE=4 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2
from mmengine.config import read_base

with read_base():
    from .chartmoe_internlm_xcomposer2_vl_7b_align_table_e1_gpu4 import *  # noqa: F401,F403,E501

expert = 'json'
data_mix = [(f'chart2{expert}.json', 200)]
evaluation_inputs = ['Describe the chart as a JSON object.']

train_dataset.data_mix = data_mix
train_dataloader.dataset = train_dataset
for hook in custom_hooks:
    if hook.type is IXC2EvaluateChatHook:
        hook.evaluation_inputs = evaluation_inputs
