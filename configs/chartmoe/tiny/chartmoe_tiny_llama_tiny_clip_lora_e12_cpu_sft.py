# ChartMoE stage 3 (tiny, CPU): chart-QA SFT of the MoE connector (router and
# experts, fully) plus LoRA on the LLM; the vision tower is frozen. The MoE
# connector is built from the three aligned projectors first:
#   python tools/build_moe_connector.py diverse work_dirs/tiny_moe_connector \
#       --projectors work_dirs/tiny/general_projector \
#       work_dirs/<align_table> work_dirs/<align_json> work_dirs/<align_code>
import torch
from mmengine.dataset import DefaultSampler
from mmengine.hooks import (CheckpointHook, DistSamplerSeedHook, IterTimerHook,
                            LoggerHook, ParamSchedulerHook)
from mmengine.optim import CosineAnnealingLR, OptimWrapper
from mmengine.visualization import LocalVisBackend, Visualizer
from peft import LoraConfig
from torch.optim import AdamW
from transformers import (AutoModelForCausalLM, AutoTokenizer,
                          CLIPImageProcessor, CLIPVisionModel)

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import template_map_fn_factory
from xtuner.engine.hooks import DatasetInfoHook, EvaluateChatHook
from xtuner.engine.runner import TrainLoop
from xtuner.utils import PROMPT_TEMPLATE
from xtuner_chartmoe.dataset import (ChartConcatDataset, ChartLLaVADataset,
                                     RepeatedDataset, chartqa_map_fn,
                                     chartqa_pot_map_fn)
from xtuner_chartmoe.engine.hooks import RoutingStatsHook
from xtuner_chartmoe.model import ChartMoEModel

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model (all built offline by tools/build_tiny_default.py)
tiny_root = './work_dirs/tiny/'
llm_name_or_path = tiny_root + 'llm'
visual_encoder_name_or_path = tiny_root + 'clip'
moe_connector = './work_dirs/tiny_moe_connector'  # tools/build_moe_connector.py

# MoE connector training: router aux losses (ChartMoE: off; CuMo 0.1 / 0.01)
balance_loss_coef = 0.0
z_loss_coef = 0.0

# Data: ChartQA-format QA (imgname, query, label, pot), asked twice: for the
# short answer and for the program of thought
data_root = tiny_root + 'data/'
data_path = data_root + 'sft_chartqa.json'
image_folder = data_root
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = 1024

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
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip

# Save
save_steps = 500
save_total_limit = 1  # Maximum checkpoints to keep (-1 means unlimited)

# Evaluate the generation performance during the training
evaluation_freq = 500
SYSTEM = ''
evaluation_images = data_root + 'charts/000000.png'
evaluation_inputs = [
    'Answer the question using a single word or phrase.'
    'What is the highest value?'
]

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
    padding_side='right')

image_processor = dict(
    type=CLIPImageProcessor.from_pretrained,
    pretrained_model_name_or_path=visual_encoder_name_or_path)

model = dict(
    type=ChartMoEModel,
    freeze_llm=True,
    freeze_visual_encoder=True,
    moe_projector=dict(pretrained=moe_connector),
    balance_loss_coef=balance_loss_coef,
    z_loss_coef=z_loss_coef,
    use_activation_checkpointing=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        torch_dtype=torch.float32),
    llm_lora=dict(
        type=LoraConfig,
        r=16,
        lora_alpha=16,
        lora_dropout=0.05,
        bias='none',
        task_type='CAUSAL_LM'),
    visual_encoder=dict(
        type=CLIPVisionModel.from_pretrained,
        pretrained_model_name_or_path=visual_encoder_name_or_path))

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
short_answer_dataset = dict(
    type=ChartLLaVADataset,
    data_path=data_path,
    image_folder=image_folder,
    tokenizer=tokenizer,
    image_processor=image_processor,
    dataset_map_fn=chartqa_map_fn,
    template_map_fn=dict(
        type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    pad_image_to_square=True,
    map_num_proc=1)
pot_dataset = {**short_answer_dataset, 'dataset_map_fn': chartqa_pot_map_fn}

train_dataset = dict(
    type=ChartConcatDataset, datasets=[short_answer_dataset, pot_dataset])

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=dict(type=RepeatedDataset, dataset=train_dataset, times=repeats),
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=OptimWrapper,
    optimizer=dict(
        type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts)

# No warmup: on tiny data a warmup rounds to <= 1 iteration, and mmengine's
# chained cosine then stays at the warmup's start LR.
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
        type=EvaluateChatHook,
        tokenizer=tokenizer,
        image_processor=image_processor,
        every_n_iters=evaluation_freq,
        evaluation_inputs=evaluation_inputs,
        evaluation_images=evaluation_images,
        system=SYSTEM,
        max_new_tokens=24,
        prompt_template=prompt_template)
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
