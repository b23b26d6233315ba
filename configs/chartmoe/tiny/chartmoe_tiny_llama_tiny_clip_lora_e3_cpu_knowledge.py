# ChartMoE stage 2 (tiny, CPU): chart knowledge. The MoE connector (router and
# experts, fully) and LoRA on the LLM learn MMC-Instruct style chart
# instructions (chart type, title and axes, summaries) between the alignment
# and the chart-QA SFT, as in the ChartMoE paper (the reference code skips
# it). Starts from the built connector; the SFT then continues from this
# stage's checkpoint:
#   python -m xtuner.tools.train <sft config> \
#       --cfg-options model.pretrained_pth=<this stage's iter_N.pth>
from mmengine.config import read_base

with read_base():
    from .chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft import *  # noqa: F401,F403,E501

from xtuner_chartmoe.dataset import mmc_instruct_map_fn  # noqa: E402

data_path = data_root + 'knowledge_mmc.json'
repeats = 3
evaluation_inputs = ['Summarize what the chart shows.']

train_dataset = {**short_answer_dataset, 'data_path': data_path,
                 'dataset_map_fn': mmc_instruct_map_fn}
train_dataloader.dataset = dict(
    type=RepeatedDataset, dataset=train_dataset, times=repeats)
for hook in custom_hooks:
    if hook.type is EvaluateChatHook:
        hook.evaluation_inputs = evaluation_inputs
