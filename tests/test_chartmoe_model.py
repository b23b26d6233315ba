"""ChartMoEModel in-process on the tiny default."""
import pytest
import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer,
                          CLIPImageProcessor, CLIPVisionModel)
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import template_map_fn_factory
from xtuner.utils import PROMPT_TEMPLATE

from xtuner_chartmoe.dataset import ChartLLaVADataset, chartqa_map_fn
from xtuner_chartmoe.model import ChartMoEModel


@pytest.fixture(scope='module')
def tiny(workspace):
    root = workspace / 'work_dirs' / 'tiny'
    return {name: str(root / name) for name in (
        'llm', 'clip', 'general_projector', 'data')}


@pytest.fixture(scope='module')
def batch(tiny):
    dataset = ChartLLaVADataset(
        image_folder=tiny['data'],
        image_processor=CLIPImageProcessor.from_pretrained(tiny['clip']),
        data_path=tiny['data'] + '/sft_chartqa.json',
        tokenizer=AutoTokenizer.from_pretrained(tiny['llm']),
        dataset_map_fn=chartqa_map_fn,
        template_map_fn=template_map_fn_factory(
            PROMPT_TEMPLATE.internlm2_chat),
        max_length=512, pad_image_to_square=True, map_num_proc=1)
    return default_collate_fn([dataset[i] for i in range(4)])


def build(tiny, **kwargs):
    torch.manual_seed(0)
    return ChartMoEModel(
        llm=AutoModelForCausalLM.from_pretrained(tiny['llm']),
        visual_encoder=CLIPVisionModel.from_pretrained(tiny['clip']),
        freeze_llm=True, freeze_visual_encoder=True,
        use_activation_checkpointing=False, **kwargs)


def loss_of(model, batch, **_):
    data = {k: (v.clone() if torch.is_tensor(v) else v)
            for k, v in batch['data'].items()}
    return model(data, mode='loss')


def test_upcycled_moe_gives_the_dense_models_loss(tiny, batch):
    dense = build(tiny, projector_init=tiny['general_projector']).eval()
    moe = build(tiny, moe_projector=dict(
        mode='upcycle', expert_projectors=[tiny['general_projector']])).eval()
    assert moe.is_moe and not dense.is_moe
    with torch.no_grad():
        dense_loss = loss_of(dense, batch)['loss']
        moe_loss = loss_of(moe, batch)['loss']
    torch.testing.assert_close(moe_loss, dense_loss, atol=1e-5, rtol=0)
    routing = moe.last_routing
    assert routing.selected_experts.shape[:2] == (4, 64)  # 112/14 = 8x8


def test_aux_losses_are_added_and_logged_separately(tiny, batch):
    model = build(tiny, balance_loss_coef=0.1, z_loss_coef=0.01,
                  moe_projector=dict(mode='random', expert_projectors=[
                      tiny['general_projector']]))
    losses = loss_of(model, batch)
    assert set(losses) == {'loss', 'balance_loss', 'z_loss'}
    assert losses['balance_loss'].item() >= 0.1 * 0.99  # balance loss >= 1
    sum(losses.values()).backward()
    assert model.projector.gate.weight.grad.abs().sum() > 0


def test_aux_losses_off_by_default(tiny, batch):
    model = build(tiny, moe_projector=dict(
        mode='upcycle', expert_projectors=[tiny['general_projector']]))
    assert set(loss_of(model, batch)) == {'loss'}


def test_checkpoint_state_dict_keeps_the_moe_connector(tiny):
    model = build(tiny, moe_projector=dict(
        mode='upcycle', expert_projectors=[tiny['general_projector']]))
    keys = set(model.state_dict())
    assert 'projector.gate.weight' in keys
    assert 'projector.experts.3.2.weight' in keys
    assert not any(k.startswith('llm.') for k in keys)  # frozen, no LoRA


def test_bad_connector_arguments(tiny, tmp_path):
    with pytest.raises(ValueError, match='either projector_init'):
        build(tiny, projector_init=tiny['general_projector'],
              moe_projector=dict(pretrained='x'))
    with pytest.raises(ValueError, match='maps 64 -> 96'):
        build(tiny, moe_projector=dict(mode='random', visual_hidden_size=64,
                                       llm_hidden_size=96))
    with pytest.raises(FileNotFoundError, match='nowhere'):
        build(tiny, projector_init=str(tmp_path / 'nowhere'))


def test_other_save_formats_are_refused(tiny, tmp_path):
    model = build(tiny, moe_projector=dict(
        mode='upcycle', expert_projectors=[tiny['general_projector']]))
    with pytest.raises(NotImplementedError, match='--save-format xtuner'):
        model.to_hf(cfg=None, save_dir=str(tmp_path), save_format='huggingface')
