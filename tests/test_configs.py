"""Stage configs: recipe numbers, and the real-size configs build a working
model and dataset once their model/data paths point at the tiny default."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from xtuner.registry import BUILDER

from conftest import REPO

REAL = osp.join(REPO, 'configs', 'chartmoe',
                'internlm2_chat_7b_clip_vit_large_p14_336',
                'chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_{}.py')
ALL_CONFIGS = sorted(p for p in glob.glob(
    osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if not osp.basename(p).startswith('_'))


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=osp.basename)
def test_every_config_parses_and_is_consistent(path):
    cfg = Config.fromfile(path)
    model = cfg.model
    if model.type.__name__ == 'IXC2ChartMoEModel':
        # ChartMoE's IXC2 recipe never trains the ViT (train.py: fix_vit)
        assert model.freeze_visual_encoder is True
    else:
        assert model.type.__name__ == 'ChartMoEModel'
        # CLIP trains only with CuMo's MoE in it or in a whole-model stage
        trains_clip = 'visual_encoder_moe' in model or not model.freeze_llm
        assert model.freeze_visual_encoder is not trains_clip
    # the dataset the loader reads is the one the settings name
    dataset = cfg.train_dataloader.dataset
    assert cfg.train_dataset in (dataset, dataset.get('dataset'))
    for hook in cfg.custom_hooks:
        if hook.type.__name__ in ('EvaluateChatHook',
                                  'IXC2EvaluateChatHook'):
            assert hook.evaluation_inputs == cfg.evaluation_inputs


@pytest.mark.parametrize('expert', ['table', 'json', 'code'])
def test_real_align_recipe(expert):
    cfg = Config.fromfile(REAL.format(f'align_{expert}_e1_gpu8'))
    assert cfg.model.freeze_llm is True
    assert 'projector_init' in cfg.model and 'llm_lora' not in cfg.model
    assert cfg.train_dataloader.dataset.data_path.endswith(
        f'align_{expert}.json')
    assert cfg.model.llm.pretrained_model_name_or_path == \
        'internlm/internlm2-chat-7b'
    assert cfg.model.visual_encoder.pretrained_model_name_or_path == \
        'openai/clip-vit-large-patch14-336'
    optim = cfg.optim_wrapper.optimizer
    assert (optim.lr, tuple(optim.betas), optim.weight_decay) == (
        5e-5, (0.9, 0.95), 0.1)
    assert cfg.batch_size * cfg.accumulative_counts * 8 == 256
    assert cfg.max_length == 4096 and cfg.max_epochs == 1
    assert [s.type.__name__ for s in cfg.param_scheduler] == [
        'CosineAnnealingLR']  # no warmup


def test_real_sft_recipe():
    cfg = Config.fromfile(REAL.format('lora_e1_gpu8_sft'))
    lora = cfg.model.llm_lora
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (64, 64, 0.05)
    assert cfg.model.moe_projector == {'pretrained': cfg.moe_connector}
    assert cfg.model.balance_loss_coef == 0 and cfg.model.z_loss_coef == 0
    assert cfg.optim_wrapper.optimizer.lr == 5e-5
    assert cfg.batch_size * cfg.accumulative_counts * 8 == 64


@pytest.mark.parametrize('stage', ['align_json_e1_gpu8', 'lora_e1_gpu8_sft',
                                   'lora_e1_gpu8_knowledge'])
def test_real_config_builds_a_trainable_model_on_standins(
        stage, narrow_standins, monkeypatch):
    """The real config, its relative data paths resolved in the stand-in
    folder and its hub ids pointed at the narrow InternLM2 / CLIP-L
    stand-ins: the model and the data set build, a batch trains."""
    from xtuner_chartmoe.model import build_moe_projector
    from xtuner_chartmoe.devkit.standin import LLM_REPO, VISION_REPO
    monkeypatch.chdir(narrow_standins['root'])
    cfg = Config.fromfile(REAL.format(stage))
    local = {LLM_REPO: narrow_standins['llm'],
             VISION_REPO: narrow_standins['clip']}

    def point_at_standins(node):
        if isinstance(node, dict):
            if node.get('pretrained_model_name_or_path') in local:
                node['pretrained_model_name_or_path'] = local[
                    node['pretrained_model_name_or_path']]
            for value in node.values():
                point_at_standins(value)
        elif isinstance(node, list):
            for value in node:
                point_at_standins(value)

    point_at_standins(cfg._cfg_dict)
    cfg.model.llm.torch_dtype = torch.float32
    cfg.model.use_activation_checkpointing = False
    if 'moe_projector' in cfg.model:
        build_moe_projector('upcycle', [narrow_standins['general_projector']]
                            ).save_pretrained(cfg.model.moe_projector.pretrained)
    dataset_cfg = cfg.train_dataloader.dataset
    for part in dataset_cfg.get('datasets', [dataset_cfg]):
        part.map_num_proc = 1
    model = BUILDER.build(cfg.model)
    dataset = BUILDER.build(dataset_cfg)
    from xtuner.dataset.collate_fns import default_collate_fn
    batch = default_collate_fn([dataset[0], dataset[len(dataset) - 1]])
    loss = model(batch['data'], mode='loss')['loss']
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all('projector.' in n or 'lora_' in n
                             for n in trainable)
    assert any('lora_' in n for n in trainable) == ('lora' in stage)
    assert all(p.grad is not None for n, p in model.named_parameters()
               if p.requires_grad and 'projector.' in n)
