"""CuMo CLIP MoE, the top-k schedule, and a short training run per router."""
from types import SimpleNamespace

import pytest
import torch
from transformers import CLIPVisionModel

from conftest import build_tiny_model, model_loss
from xtuner_chartmoe.engine.hooks import TopKScheduleHook
from xtuner_chartmoe.model import (ROUTERS, CLIPMoEMLP, RoutingRecorder,
                                   load_clip_vision, upcycle_clip_mlps)


@pytest.fixture(scope='module')
def tiny(workspace):
    return workspace / 'work_dirs' / 'tiny'


@pytest.fixture(scope='module')
def batches(tiny_batches):
    return tiny_batches


@pytest.fixture
def build(workspace):
    return lambda _tiny, **kwargs: build_tiny_model(workspace, **kwargs)


def test_upcycled_clip_equals_dense_clip_at_step_0(tiny):
    clip = CLIPVisionModel.from_pretrained(tiny / 'clip').eval()
    pixels = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        dense = clip(pixels, output_hidden_states=True).hidden_states
        layers = upcycle_clip_mlps(clip, num_experts=4, num_selected=2)
        recorder = RoutingRecorder({'layer0': layers[0]})
        moe = clip(pixels, output_hidden_states=True).hidden_states
    assert len(layers) == clip.config.num_hidden_layers
    assert recorder.routings['layer0'].experts.shape == (2 * 65, 2)
    for a, b in zip(dense, moe):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='already upcycled'):
        upcycle_clip_mlps(clip)


def test_upcycled_clip_round_trips_save_pretrained(tiny, tmp_path):
    clip = CLIPVisionModel.from_pretrained(tiny / 'clip').eval()
    upcycle_clip_mlps(clip)
    with torch.no_grad():
        clip.vision_model.encoder.layers[0].mlp.gate.weight.normal_()
    clip.save_pretrained(tmp_path)
    reloaded = load_clip_vision(str(tmp_path)).eval()
    assert isinstance(reloaded.vision_model.encoder.layers[0].mlp, CLIPMoEMLP)
    pixels = torch.randn(1, 3, 112, 112)
    assert torch.equal(reloaded(pixels).last_hidden_state,
                       clip(pixels).last_hidden_state)


def test_dense_checkpoint_seeds_the_clip_experts(tiny, tmp_path, build):
    dense = build(tiny, freeze_visual_encoder=False,
                  projector_init=str(tiny / 'general_projector'))
    with torch.no_grad():
        dense.visual_encoder.vision_model.encoder.layers[1].mlp.fc1.weight.add_(
            1.0)
    torch.save({'state_dict': dense.state_dict()}, tmp_path / 'dense.pth')
    moe = build(tiny, freeze_visual_encoder=False,
                visual_encoder_moe=dict(num_experts=4, num_selected=2),
                pretrained_pth=str(tmp_path / 'dense.pth'))
    trained = dense.visual_encoder.vision_model.encoder.layers[1].mlp
    for expert in moe.visual_encoder.vision_model.encoder.layers[1].mlp.experts:
        assert torch.equal(expert.fc1.weight, trained.fc1.weight)
    keys = set(moe.state_dict())
    assert any('mlp.experts.3.fc2.weight' in k for k in keys)
    assert any('mlp.gate.weight' in k for k in keys)


def test_aux_losses_cover_clip_and_connector_layers(tiny, batches, build):
    model = build(tiny, freeze_visual_encoder=False,
                  visual_encoder_moe=dict(num_experts=4, num_selected=2),
                  moe_projector=dict(mode='random', expert_projectors=[
                      str(tiny / 'general_projector')]),
                  balance_loss_coef=0.1, z_loss_coef=0.01)
    losses = model_loss(model, batches[0])
    assert set(losses) == {'loss', 'balance_loss', 'z_loss'}
    assert len(model.moe_routings()) == 3 + 1
    sum(losses.values()).backward()
    gate = model.visual_encoder.vision_model.encoder.layers[0].mlp.gate
    assert gate.weight.grad.abs().sum() > 0


def test_top_k_schedule_hook(tiny, build):
    model = build(tiny, freeze_visual_encoder=False,
                  visual_encoder_moe=dict(num_experts=4, num_selected=2),
                  moe_projector=dict(mode='upcycle', expert_projectors=[
                      str(tiny / 'general_projector')]))
    hook = TopKScheduleHook(start_k=1, end_k=2, switch_ratio=0.5)
    seen = []
    for it in range(10):
        hook.before_train_iter(SimpleNamespace(model=model, iter=it,
                                               max_iters=10), it)
        clip_k = model.visual_encoder.vision_model.encoder.layers[
            0].mlp.num_selected
        seen.append((int(model.projector.num_selected), int(clip_k)))
    assert seen == [(1, 1)] * 5 + [(2, 2)] * 5
    assert int(model.state_dict()['projector.num_selected']) == 2


@pytest.mark.parametrize('router', sorted(ROUTERS))
def test_each_router_trains_and_loss_decreases(tiny, batches, router, build):
    model = build(tiny, freeze_visual_encoder=True, moe_projector=dict(
        mode='upcycle', expert_projectors=[str(tiny / 'general_projector')],
        router_type=router), balance_loss_coef=0.01)
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(p in set(model.projector.parameters())
                          for p in params)
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    losses = []
    for step in range(16):
        out = model_loss(model, batches[step % 2])
        sum(out.values()).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out['loss'].item())
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < first - 0.05, (router, losses)
