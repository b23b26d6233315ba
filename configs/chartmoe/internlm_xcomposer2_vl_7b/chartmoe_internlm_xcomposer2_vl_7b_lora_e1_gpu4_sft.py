# ChartMoE on InternLM-XComposer2-VL-7B, stage 3: chart-QA SFT, ChartMoE's
# recipe (arXiv 2409.03277; IDEA-FinAI/ChartMoE chartmoe/train/scripts/sft.sh,
# data/sft.txt): the MoE connector (router and 4 experts) in place of
# vision_proj trains fully; PEFT LoRA (r 64, alpha 64, dropout 0.05) on
# wqkv, wo, w1, w2, w3 of every layer, applied to every token (the layers'
# Partial LoRA stays frozen); ViT, the LLM's base weights and `output` frozen.
# Build the connector from the base and the three aligned vision_proj first
# (`chartmoe build-moe`, general / table / json / code experts). 4 GPUs:
#   NPROC_PER_NODE=4 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2
import torch
from mmengine.dataset import DefaultSampler
from mmengine.hooks import (CheckpointHook, DistSamplerSeedHook, IterTimerHook,
                            LoggerHook, ParamSchedulerHook)
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR
from torch.optim import AdamW
from peft import LoraConfig
from transformers import AutoTokenizer

from xtuner.engine.hooks import DatasetInfoHook
from xtuner.engine.runner import TrainLoop
from xtuner_chartmoe.dataset.chartmoe_data import ChartMoEDataset
from xtuner_chartmoe.engine.hooks import RoutingStatsHook
from xtuner_chartmoe.engine.ixc2_hooks import IXC2EvaluateChatHook
from xtuner_chartmoe.families.ixc2.training_batch import ixc2_collate_fn
from xtuner_chartmoe.families.ixc2.xtuner_model import (IXC2ChartMoEModel,
                                                      build_ixc2)

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model: IXC2-VL-7B's enhanced sibling ChartMoE starts from (a hub id in the
# local cache, or a local folder)
ixc2_name_or_path = 'Coobiw/InternLM-XComposer2_Enhanced'
image_size = 490  # 35 x 35 = 1225 visual tokens per image
# The MoE connector (a `chartmoe build-moe` folder, or ChartMoE's mlp_moe.pth)
moe_connector = './work_dirs/chartmoe_ixc2_moe_connector'
# A training checkpoint to start from, e.g. the knowledge stage's
pretrained_pth = None

# LoRA on InternLM2's attention and MLP projections (ChartMoE's train.py)
lora_target_modules = ['wqkv', 'wo', 'w1', 'w2', 'w3']

# Data: ChartMoE-Data; counts in thousands of samples (ChartMoE's given_num):
# data/sft.txt = ./data/chartqa.json 70, ./data/chartgemma.json -1 (all)
data_root = './data/ChartMoE-Data/'
data_mix = [('chartqa.json', 70), ('chartgemma.json', -1)]
count_unit = 1000
data_seed = 0
# relative image paths of the records are read under this folder
image_folder = data_root
max_length = 4096

# Scheduler & Optimizer (ChartMoE SFT: global batch 2 x 8 x 4 GPUs = 64)
batch_size = 2  # per_device
accumulative_counts = 8
dataloader_num_workers = 4
max_epochs = 1
optim_type = AdamW
lr = 5e-5
betas = (0.9, 0.95)
weight_decay = 0.1
max_norm = 1  # grad clip (HF Trainer's default, as ChartMoE)

# Save
save_steps = 500
save_total_limit = 2  # Maximum checkpoints to keep (-1 means unlimited)

# Evaluate the generation performance during the training
evaluation_freq = 500
evaluation_images = './data/ChartQA/train/png/00006834003065.png'
evaluation_inputs = [
    'Answer the question using a single word or phrase.'
    'What is the highest value in the chart?'
]

#######################################################################
#                     PART 2  Model & Tokenizer                       #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=ixc2_name_or_path,
    trust_remote_code=True)

model = dict(
    type=IXC2ChartMoEModel,
    llm=dict(
        type=build_ixc2,
        source=ixc2_name_or_path,
        torch_dtype=torch.bfloat16),
    freeze_llm=True,
    freeze_visual_encoder=True,
    moe_projector=dict(pretrained=moe_connector),
    pretrained_pth=pretrained_pth,
    llm_lora=dict(
        type=LoraConfig,
        r=64,
        lora_alpha=64,
        lora_dropout=0.05,
        bias='none',
        target_modules=lora_target_modules),
    max_length=max_length,
    use_activation_checkpointing=True)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=ChartMoEDataset,
    data_mix=data_mix,
    data_root=data_root,
    image_folder=image_folder,
    tokenizer=tokenizer,
    image_size=image_size,
    count_unit=count_unit,
    seed=data_seed)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=True,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=ixc2_collate_fn))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=AmpOptimWrapper,
    optimizer=dict(
        type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='bfloat16')

# ChartMoE: cosine, no warmup (warmup_ratio 0)
param_scheduler = [
    dict(
        type=CosineAnnealingLR,
        eta_min=0.0,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True)
]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(type=RoutingStatsHook),  # per-expert load, routing entropy
    dict(
        type=IXC2EvaluateChatHook,
        tokenizer=tokenizer,
        every_n_iters=evaluation_freq,
        evaluation_inputs=evaluation_inputs,
        evaluation_images=evaluation_images)
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(
        type=CheckpointHook,
        by_epoch=False,
        interval=save_steps,
        max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
log_processor = dict(by_epoch=False)
