# ChartMoE on InternLM-XComposer2 (tiny, CPU), stage 1: align the *json*
# expert (ChartMoE's scripts/json_align.sh). Identical to the table stage
# except for its data (chart -> JSON).
from mmengine.config import read_base

with read_base():
    from .chartmoe_tiny_ixc2_align_table_e3_cpu import *  # noqa: F401,F403,E501

expert = 'json'
data_mix = [(f'chart2{expert}.json', -1)]
train_dataset.data_mix = data_mix
train_dataloader.dataset.dataset = train_dataset
