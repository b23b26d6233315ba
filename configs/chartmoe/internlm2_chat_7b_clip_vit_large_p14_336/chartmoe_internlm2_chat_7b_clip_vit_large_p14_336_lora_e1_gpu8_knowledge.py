# ChartMoE stage 2: chart knowledge. The MoE connector (router + 4 experts)
# trains fully and InternLM2 with LoRA on MMC-Instruct's chart instructions,
# between the alignment and the chart-QA SFT, as in the ChartMoE paper (the
# reference code skips it). Same model and schedule as the SFT stage; the SFT
# then continues from this stage's checkpoint (its `pretrained_pth`).
# MMC-Instruct: https://huggingface.co/datasets/xywang1/MMC, MMC-Instruction/
# (image tarballs unpacked next to their jsonl files). 8 GPUs:
#   NPROC_PER_NODE=8 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2
from mmengine.config import read_base

with read_base():
    from .chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_lora_e1_gpu8_sft import *  # noqa: F401,F403,E501

from xtuner_chartmoe.dataset import mmc_instruct_map_fn  # noqa: E402

mmc_root = './data/MMC/MMC-Instruction/'
mmc_parts = ('arxiv', 'non-arxiv')
evaluation_inputs = ['Summarize what the chart shows.']

train_dataset = dict(
    type=ChartConcatDataset,
    datasets=[{
        **chartqa_dataset, 'data_path':
        mmc_root + f'mmc_instruction_{part}_text.jsonl',
        'image_folder': mmc_root + f'mmc_instruction_{part}_images',
        'dataset_map_fn': mmc_instruct_map_fn
    } for part in mmc_parts])
train_dataloader.dataset = train_dataset
for hook in custom_hooks:
    if hook.type is EvaluateChatHook:
        hook.evaluation_inputs = evaluation_inputs
