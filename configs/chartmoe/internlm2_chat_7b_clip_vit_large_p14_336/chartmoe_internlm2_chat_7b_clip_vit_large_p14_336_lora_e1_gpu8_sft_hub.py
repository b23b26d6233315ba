# ChartMoE stage 3: chart-QA SFT on the data as downloaded from the Hugging Face
# hub: ChartQA's train split (HuggingFaceM4/ChartQA) and ChartGemma
# (ahmed-masry/ChartGemma), parquet shards with the images inside, read as
# they are (no image folder, no extraction). The MoE connector (router + 4
# experts) trains fully, InternLM2 with LoRA (r=64, alpha=64, dropout 0.05);
# CLIP is frozen. Same recipe as ..._lora_e1_gpu8_sft, whose ChartQA PoT part
# (ChartMoE's own programs, published with its images in a zip) is not here.
# The data, once:
#   huggingface-cli download --repo-type dataset HuggingFaceM4/ChartQA \
#       --local-dir ./data/hub/ChartQA
#   huggingface-cli download --repo-type dataset ahmed-masry/ChartGemma \
#       --local-dir ./data/hub/ChartGemma
# Build the connector from the general + three aligned projectors first:
#   python tools/build_moe_connector.py diverse \
#       ./work_dirs/chartmoe_internlm2_moe_connector \
#       --projectors GENERAL_PROJECTOR ./work_dirs/<align_table> \
#       ./work_dirs/<align_json> ./work_dirs/<align_code>
# 8 GPUs:
#   NPROC_PER_NODE=8 xtuner train THIS_CONFIG --deepspeed deepspeed_zero2
import torch
from mmengine.hooks import (CheckpointHook, DistSamplerSeedHook, IterTimerHook,
                            LoggerHook, ParamSchedulerHook)
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR
from peft import LoraConfig
from torch.optim import AdamW
from transformers import (AutoModelForCausalLM, AutoTokenizer,
                          CLIPImageProcessor, CLIPVisionModel)

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import template_map_fn_factory
from xtuner.dataset.samplers import LengthGroupedSampler
from xtuner.engine.hooks import DatasetInfoHook, EvaluateChatHook
from xtuner.engine.runner import TrainLoop
from xtuner.utils import PROMPT_TEMPLATE
from xtuner_chartmoe.dataset import (ChartConcatDataset, ChartLLaVADataset,
                                     chartgemma_map_fn, chartqa_map_fn)
from xtuner_chartmoe.engine.hooks import RoutingStatsHook
from xtuner_chartmoe.model import ChartMoEModel

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
llm_name_or_path = 'internlm/internlm2-chat-7b'
visual_encoder_name_or_path = 'openai/clip-vit-large-patch14-336'
# Written by tools/build_moe_connector.py (general, table, json, code experts)
moe_connector = './work_dirs/chartmoe_internlm2_moe_connector'

# LoRA on InternLM2's attention and MLP projections, as the ChartMoE
# reference does (not on the LM head, `output`)
lora_target_modules = ['wqkv', 'wo', 'w1', 'w2', 'w3']

# MoE connector training: router aux losses (ChartMoE: off; CuMo 0.1 / 0.01)
balance_loss_coef = 0.0
z_loss_coef = 0.0

# Data: the downloaded folders (data/{train,val,test}-*.parquet); ChartQA's
# train split, human and augmented questions (short answers), and ChartGemma
chartqa_hub_path = './data/hub/ChartQA'
chartqa_split = 'train'
chartgemma_hub_path = './data/hub/ChartGemma'
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = 4096

# Scheduler & Optimizer (ChartMoE SFT recipe; global batch 8 x 8 x 1 = 64)
batch_size = 8  # per_device
accumulative_counts = 1
dataloader_num_workers = 4
max_epochs = 1
optim_type = AdamW
lr = 5e-5
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03

# Save
save_steps = 500
save_total_limit = 2  # Maximum checkpoints to keep (-1 means unlimited)

# Evaluate the generation performance during the training
evaluation_freq = 500
SYSTEM = ''
# A chart image file or URL to answer about (None: the question alone)
evaluation_images = None
evaluation_inputs = [
    'Answer the question using a single word or phrase.'
    'What is the highest value in the chart?'
]

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
    trust_remote_code=True,
    padding_side='right')

image_processor = dict(
    type=CLIPImageProcessor.from_pretrained,
    pretrained_model_name_or_path=visual_encoder_name_or_path,
    trust_remote_code=True)

model = dict(
    type=ChartMoEModel,
    freeze_llm=True,
    freeze_visual_encoder=True,
    moe_projector=dict(pretrained=moe_connector),
    balance_loss_coef=balance_loss_coef,
    z_loss_coef=z_loss_coef,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        trust_remote_code=True,
        torch_dtype=torch.float16),
    llm_lora=dict(
        type=LoraConfig,
        r=64,
        lora_alpha=64,
        lora_dropout=0.05,
        bias='none',
        target_modules=lora_target_modules,
        task_type='CAUSAL_LM'),
    visual_encoder=dict(
        type=CLIPVisionModel.from_pretrained,
        pretrained_model_name_or_path=visual_encoder_name_or_path))

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
chartqa_dataset = dict(
    type=ChartLLaVADataset,
    data_path=chartqa_hub_path,
    split=chartqa_split,
    image_folder=None,
    tokenizer=tokenizer,
    image_processor=image_processor,
    dataset_map_fn=chartqa_map_fn,
    template_map_fn=dict(
        type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    pad_image_to_square=True,
    map_num_proc=32,
    verify_images=True)  # each embedded image: PIL header/CRC check, once
chartgemma_dataset = {
    **chartqa_dataset, 'data_path': chartgemma_hub_path, 'split': 'train',
    'dataset_map_fn': chartgemma_map_fn
}

train_dataset = dict(
    type=ChartConcatDataset, datasets=[chartqa_dataset, chartgemma_dataset])

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=True,
    dataset=train_dataset,
    sampler=dict(
        type=LengthGroupedSampler,
        length_property='modality_length',
        per_device_batch_size=batch_size * accumulative_counts),
    collate_fn=dict(type=default_collate_fn))

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
    dtype='float16')

param_scheduler = [
    dict(
        type=LinearLR,
        start_factor=1e-5,
        by_epoch=True,
        begin=0,
        end=warmup_ratio * max_epochs,
        convert_to_iter_based=True),
    dict(
        type=CosineAnnealingLR,
        eta_min=0.0,
        by_epoch=True,
        begin=warmup_ratio * max_epochs,
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
        prompt_template=prompt_template)
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
