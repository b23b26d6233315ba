"""The sparse MoE block both MoE layers are built on: the same block in the
connector and in CuMo's CLIP MoE (grouped experts, forced expert, routing
recorder)."""
import pytest
import torch
from transformers import CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPMLP

from xtuner_chartmoe.model import (CLIPMoEMLP, MoEProjectorConfig,
                                   MoEProjectorModel, RoutingRecorder,
                                   SparseMoEBlock)
from xtuner_chartmoe.model.moe_block import (dispatch, run_experts_grouped,
                                             run_experts_sliced)


def connector():
    torch.manual_seed(0)
    return MoEProjectorModel(MoEProjectorConfig(
        visual_hidden_size=16, llm_hidden_size=32, num_experts=4,
        num_selected=2))


def clip_moe():
    torch.manual_seed(0)
    dense = CLIPMLP(CLIPVisionConfig(hidden_size=16, intermediate_size=32))
    moe = CLIPMoEMLP(dense, 16, num_experts=4, num_selected=2)
    with torch.no_grad():  # distinct experts
        for expert in moe.experts:
            expert.fc1.weight.normal_()
    return moe


@pytest.mark.parametrize('make', [connector, clip_moe])
@pytest.mark.skipif(not hasattr(torch, '_grouped_mm'),
                    reason='torch without _grouped_mm')
def test_grouped_experts_equal_slices(make):
    """The grouped-GEMM expert run (CPU here, fp32) gives the per-slice
    outputs and gradients, for Sequential and CLIP MLP experts alike."""
    moe = make()
    x = torch.randn(40, 16)
    chosen = torch.randint(0, 3, (40, 2))  # expert 3 gets no token
    routed = dispatch(chosen, 4)
    x_sorted = x[routed.token_of_slot]
    results = []
    for grouped in (False, True):
        moe.zero_grad()
        out = run_experts_grouped(
            [moe.expert_layers(e) for e in moe.experts], x_sorted,
            routed.tokens_per_expert) if grouped else run_experts_sliced(
                moe.experts, x_sorted, routed.tokens_per_expert)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in
                                       moe.experts.parameters()]))
    (out_s, grads_s), (out_g, grads_g) = results
    torch.testing.assert_close(out_g, out_s, atol=1e-5, rtol=1e-5)
    for g, s in zip(grads_g, grads_s):
        torch.testing.assert_close(g, s, atol=1e-4, rtol=1e-4)


def test_forced_expert_and_recorder_in_the_clip_moe():
    moe = clip_moe().eval()
    recorder = RoutingRecorder({'mlp': moe})
    x = torch.randn(2, 5, 16)
    moe.forced_expert = 3
    out = moe(x)
    torch.testing.assert_close(out, moe.experts[3](x))
    assert (recorder.routings['mlp'].experts == 3).all()
    recorder.clear()
    assert recorder.routings == {}


def test_both_layers_are_the_block():
    for moe in (connector(), clip_moe()):
        assert isinstance(moe, SparseMoEBlock)
        keys = list(moe.state_dict())
        assert keys[0].startswith('gate.') and keys[-1] == 'num_selected'
        out, routing = SparseMoEBlock.forward(moe, torch.randn(3, 4, 16))
        assert out.shape[:2] == (3, 4) and routing.experts.shape == (12, 2)
