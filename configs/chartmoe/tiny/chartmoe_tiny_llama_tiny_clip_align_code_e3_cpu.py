# ChartMoE stage 1 (tiny, CPU): align the *code* expert. Identical to the
# table stage except for its data (chart -> code).
from mmengine.config import read_base

with read_base():
    from .chartmoe_tiny_llama_tiny_clip_align_table_e3_cpu import *  # noqa: F401,F403,E501

expert = 'code'
data_path = data_root + f'align_{expert}.json'
train_dataset.data_path = data_path
train_dataloader.dataset.dataset = train_dataset
