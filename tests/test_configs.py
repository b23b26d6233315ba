"""Stage configs: recipe numbers, and the real-size configs build a working
model and dataset once their model/data paths point at the tiny default."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from xtuner.registry import BUILDER

from conftest import REPO

REAL = osp.join(REPO, 'configs', 'chartmoe',
                'internlm2_chat_7b_clip_vit_large_p14_336',
                'chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_{}.py')
ALL_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                               recursive=True))


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=osp.basename)
def test_every_config_parses_and_uses_chartmoe_model(path):
    cfg = Config.fromfile(path)
    assert cfg.model.type.__name__ == 'ChartMoEModel'
    # only the CuMo stages (CLIP MoE, whole-model pre-finetune) train CLIP
    trains_clip = 'clipmoe' in path or 'prefinetune' in path
    assert cfg.model.freeze_visual_encoder is not trains_clip
    assert ('visual_encoder_moe' in cfg.model) == ('clipmoe' in path)


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


@pytest.mark.parametrize('stage', ['align_json_e1_gpu8', 'lora_e1_gpu8_sft'])
def test_real_config_builds_a_trainable_model_on_tiny_weights(
        stage, workspace, tmp_path):
    from xtuner_chartmoe.model import build_moe_projector
    tiny = workspace / 'work_dirs' / 'tiny'
    cfg = Config.fromfile(REAL.format(stage))
    build_moe_projector('upcycle', [str(tiny / 'general_projector')]
                        ).save_pretrained(tmp_path / 'moe')
    for part, path in ((cfg.model.llm, tiny / 'llm'),
                       (cfg.model.visual_encoder, tiny / 'clip'),
                       (cfg.tokenizer, tiny / 'llm'),
                       (cfg.image_processor, tiny / 'clip')):
        part.pretrained_model_name_or_path = str(path)
    cfg.model.llm.torch_dtype = torch.float32
    if 'projector_init' in cfg.model:
        cfg.model.projector_init = str(tiny / 'general_projector')
    else:
        cfg.model.moe_projector = dict(pretrained=str(tmp_path / 'moe'))
    cfg.model.use_activation_checkpointing = False
    data = tiny / 'data'
    chartqa = json.loads((data / 'sft_chartqa.json').read_text())
    (tmp_path / 'gemma.json').write_text(json.dumps([
        {'image': r['imgname'], 'input': r['query'], 'output': r['label']}
        for r in chartqa]))
    files = {'chartmoe_map_fn': data / 'align_json.json',
             'chartqa_map_fn': data / 'sft_chartqa.json',
             'chartqa_pot_map_fn': data / 'sft_chartqa.json',
             'chartgemma_map_fn': tmp_path / 'gemma.json'}
    dataset_cfg = cfg.train_dataloader.dataset
    for part in dataset_cfg.get('datasets', [dataset_cfg]):
        part.update(data_path=str(files[part.dataset_map_fn.__name__]),
                    image_folder=str(data), map_num_proc=1,
                    tokenizer=cfg.tokenizer,
                    image_processor=cfg.image_processor)
    model = BUILDER.build(cfg.model)
    dataset = BUILDER.build(dataset_cfg)
    from xtuner.dataset.collate_fns import default_collate_fn
    batch = default_collate_fn([dataset[0], dataset[len(dataset) - 1]])
    loss = model(batch['data'], mode='loss')['loss']
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all('projector.' in n or 'lora_' in n
                             for n in trainable)
    assert ('lora_' in ' '.join(trainable)) == (stage.endswith('sft'))
