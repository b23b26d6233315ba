# ChartMoE on InternLM-XComposer2 (tiny, CPU), stage 3: chart-QA SFT. The MoE
# connector (router and experts) trains fully, the LLM with LoRA on wqkv, wo,
# w1, w2, w3 (every token; the Partial LoRA stays frozen); the ViT is frozen,
# as ChartMoE's scripts/sft.sh does. The MoE connector: build-tiny's
# upcycled one, or the one `chartmoe build-moe` builds from the three aligned
# vision_proj checkpoints (set moe_connector). Build the tiny IXC2 first:
#   chartmoe build-tiny --family ixc2 --out work_dirs/tiny_ixc2
import torch
from mmengine.dataset import DefaultSampler
from mmengine.hooks import (CheckpointHook, DistSamplerSeedHook, IterTimerHook,
                            LoggerHook, ParamSchedulerHook)
from mmengine.optim import CosineAnnealingLR, OptimWrapper
from mmengine.visualization import LocalVisBackend, Visualizer
from torch.optim import AdamW
from peft import LoraConfig
from transformers import AutoTokenizer

from xtuner.engine.hooks import DatasetInfoHook
from xtuner.engine.runner import TrainLoop
from xtuner_chartmoe.dataset import RepeatedDataset
from xtuner_chartmoe.dataset.chartmoe_data import ChartMoEDataset
from xtuner_chartmoe.engine.hooks import RoutingStatsHook
from xtuner_chartmoe.engine.ixc2_hooks import IXC2EvaluateChatHook
from xtuner_chartmoe.families.ixc2.training_batch import ixc2_collate_fn
from xtuner_chartmoe.families.ixc2.xtuner_model import (IXC2ChartMoEModel,
                                                      build_ixc2)

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model (built offline by chartmoe build-tiny --family ixc2)
tiny_root = './work_dirs/tiny_ixc2/'
ixc2_name_or_path = tiny_root + 'ixc2'
image_size = 112  # the tiny IXC2's img_size (IXC2: 490)
moe_connector = tiny_root + 'moe_connector'  # or chartmoe build-moe's output

# LoRA on InternLM2's attention and MLP projections (ChartMoE's targets)
lora_target_modules = ['wqkv', 'wo', 'w1', 'w2', 'w3']

# Data: ChartMoE-Data's SFT files as ChartMoE's data/sft.txt mixes them
# (chartqa.json 70, chartgemma.json -1), here 16 + 8 samples: counts are in
# samples (count_unit 1), in thousands in ChartMoE's lists
data_root = tiny_root + 'data/'
data_mix = [('chartqa.json', 16), ('chartgemma.json', 8)]
count_unit = 1
data_seed = 0
max_length = 512

# Scheduler & Optimizer
batch_size = 4  # per_device
accumulative_counts = 1
dataloader_num_workers = 0
# 12 passes over the data as one epoch of a repeated data set: mmengine
# sleeps 2 s at every epoch boundary, which would dominate tiny runs
max_epochs = 1
repeats = 12
optim_type = AdamW
lr = 3e-3
betas = (0.9, 0.95)
weight_decay = 0.1
max_norm = 1  # grad clip

# Save
save_steps = 500
save_total_limit = 1  # Maximum checkpoints to keep (-1 means unlimited)

# Evaluate the generation performance during the training
evaluation_freq = 500
evaluation_images = data_root + 'charts/000000.png'
evaluation_inputs = [
    'Answer the question using a single word or phrase.'
    'What is the highest value?'
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
        torch_dtype=torch.float32),
    freeze_llm=True,
    freeze_visual_encoder=True,
    moe_projector=dict(pretrained=moe_connector),
    llm_lora=dict(
        type=LoraConfig,
        r=16,
        lora_alpha=16,
        lora_dropout=0.05,
        bias='none',
        target_modules=lora_target_modules),
    max_length=max_length,
    use_activation_checkpointing=False)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=ChartMoEDataset,
    data_mix=data_mix,
    data_root=data_root,
    image_folder=data_root,
    tokenizer=tokenizer,
    image_size=image_size,
    count_unit=count_unit,
    seed=data_seed)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=dict(type=RepeatedDataset, dataset=train_dataset, times=repeats),
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=ixc2_collate_fn))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=OptimWrapper,
    optimizer=dict(
        type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts)

# ChartMoE SFT recipe: cosine, no warmup
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
        evaluation_images=evaluation_images,
        max_new_tokens=8)
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=5),
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
    dist_cfg=dict(backend='gloo'),
)
# torchrun on CPU: DDP takes the module's device (mmengine would pass GPU ids)
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False)

visualizer = dict(type=Visualizer, vis_backends=[dict(type=LocalVisBackend)])
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
