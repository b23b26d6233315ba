"""ChartMoEModel in-process on the tiny default."""
import pytest
import torch

from conftest import build_tiny_model, model_loss


@pytest.fixture(scope='module')
def tiny(workspace):
    root = workspace / 'work_dirs' / 'tiny'
    return {name: str(root / name) for name in (
        'llm', 'clip', 'general_projector', 'data')}


@pytest.fixture(scope='module')
def batch(tiny_batches):
    return tiny_batches[0]


@pytest.fixture
def build(workspace):
    return lambda _tiny, **kwargs: build_tiny_model(
        workspace, freeze_visual_encoder=True, **kwargs)


def test_upcycled_moe_gives_the_dense_models_loss(tiny, batch, build):
    dense = build(tiny, projector_init=tiny['general_projector']).eval()
    moe = build(tiny, moe_projector=dict(
        mode='upcycle', expert_projectors=[tiny['general_projector']])).eval()
    assert moe.is_moe and not dense.is_moe
    with torch.no_grad():
        dense_loss = model_loss(dense, batch)['loss']
        moe_loss = model_loss(moe, batch)['loss']
    torch.testing.assert_close(moe_loss, dense_loss, atol=1e-5, rtol=0)
    routing = moe.routing_recorder.routings['projector']
    assert routing.experts.shape[:2] == (4, 64)  # 112/14 = 8x8


def test_aux_losses_are_added_and_logged_separately(tiny, batch, build):
    model = build(tiny, balance_loss_coef=0.1, z_loss_coef=0.01,
                  moe_projector=dict(mode='random', expert_projectors=[
                      tiny['general_projector']]))
    losses = model_loss(model, batch)
    assert set(losses) == {'loss', 'balance_loss', 'z_loss'}
    assert losses['balance_loss'].item() >= 0.1 * 0.99  # balance loss >= 1
    sum(losses.values()).backward()
    assert model.projector.gate.weight.grad.abs().sum() > 0


def test_aux_losses_off_by_default(tiny, batch, build):
    model = build(tiny, moe_projector=dict(
        mode='upcycle', expert_projectors=[tiny['general_projector']]))
    assert set(model_loss(model, batch)) == {'loss'}


def test_checkpoint_state_dict_keeps_the_moe_connector(tiny, build):
    model = build(tiny, moe_projector=dict(
        mode='upcycle', expert_projectors=[tiny['general_projector']]))
    keys = set(model.state_dict())
    assert 'projector.gate.weight' in keys
    assert 'projector.experts.3.2.weight' in keys
    assert not any(k.startswith('llm.') for k in keys)  # frozen, no LoRA


def test_bad_connector_arguments(tiny, tmp_path, build):
    with pytest.raises(ValueError, match='either projector_init'):
        build(tiny, projector_init=tiny['general_projector'],
              moe_projector=dict(pretrained='x'))
    with pytest.raises(ValueError, match='maps 64 -> 96'):
        build(tiny, moe_projector=dict(mode='random', visual_hidden_size=64,
                                       llm_hidden_size=96))
    with pytest.raises(FileNotFoundError, match='nowhere'):
        build(tiny, projector_init=str(tmp_path / 'nowhere'))


def test_official_save_format_is_refused(tiny, tmp_path, build):
    model = build(tiny, moe_projector=dict(
        mode='upcycle', expert_projectors=[tiny['general_projector']]))
    with pytest.raises(NotImplementedError, match='no place for a MoE'):
        model.to_hf(cfg=None, save_dir=str(tmp_path), save_format='official')
    assert not list(tmp_path.iterdir())


def test_lora_adapter_and_connector_reload_through_pretrained_pth(
        tiny, tmp_path, build):
    """One load path: a checkpoint of this model, saved as mmengine saves
    it (XTuner's state-dict filter), restores exactly its trained tensors."""
    from peft import LoraConfig
    lora = LoraConfig(r=4, lora_alpha=4, task_type='CAUSAL_LM')
    moe = dict(mode='random', expert_projectors=[tiny['general_projector']])
    trained = build(tiny, moe_projector=moe, llm_lora=lora)
    for name, param in trained.named_parameters():
        if param.requires_grad:
            param.data.normal_()
    state = trained.state_dict()
    torch.save({'state_dict': state}, tmp_path / 'iter_1.pth')
    reloaded = build(tiny, moe_projector=moe, llm_lora=lora,
                     pretrained_pth=str(tmp_path / 'iter_1.pth'))
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, state[key]), key
