# ChartMoE stage 1: align the *code* expert (chart -> code). Identical to
# the table stage except for its data.
from mmengine.config import read_base

with read_base():
    from .chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_align_table_e1_gpu8 import *  # noqa: F401,F403,E501

expert = 'code'
data_path = data_root + f'align_{expert}.json'
train_dataset.data_path = data_path
train_dataloader.dataset = train_dataset
evaluation_inputs = ['Write the Python matplotlib code that draws this chart.']
for hook in custom_hooks:
    if hook.type is EvaluateChatHook:
        hook.evaluation_inputs = evaluation_inputs
