"""GPU-only checks of the grouped-GEMM dispatch (skipped without CUDA)."""
import pytest
import torch

from xtuner_chartmoe.model import MoEProjectorConfig, MoEProjectorModel
from xtuner_chartmoe.model.moe_block import grouped_mm_supported

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs a CUDA GPU')


def make(dv=256, dl=512):
    torch.manual_seed(0)
    return MoEProjectorModel(MoEProjectorConfig(
        visual_hidden_size=dv, llm_hidden_size=dl, num_experts=4,
        num_selected=2)).cuda().to(torch.bfloat16)


def grads_of(moe, x, experts, weights, grouped):
    moe.zero_grad()
    moe.dispatch = 'grouped_mm' if grouped else 'slices'
    out = moe.mix(x, weights, experts)
    out.float().square().mean().backward()
    return out, [p.grad.clone() for p in moe.experts.parameters()]


@pytest.mark.parametrize('skew', [False, True])
def test_grouped_gemm_equals_per_expert_slices(skew):
    moe = make()
    if not grouped_mm_supported(torch.zeros(1, device='cuda',
                                            dtype=torch.bfloat16),
                                [moe.expert_layers(e) for e in moe.experts]):
        pytest.skip('torch._grouped_mm not available on this GPU/torch')
    x = torch.randn(3000, 256, device='cuda', dtype=torch.bfloat16)
    experts = torch.randint(0, 4, (3000, 2), device='cuda')
    if skew:  # expert 3 gets no token at all
        experts = experts.remainder(3)
    weights = torch.rand(3000, 2, device='cuda')
    out_g, grads_g = grads_of(moe, x, experts, weights, grouped=True)
    out_s, grads_s = grads_of(moe, x, experts, weights, grouped=False)
    torch.testing.assert_close(out_g, out_s, atol=2e-2, rtol=2e-2)
    for g, s in zip(grads_g, grads_s):
        torch.testing.assert_close(g, s, atol=2e-2, rtol=5e-2)
    if skew:
        assert all(torch.count_nonzero(p.grad) == 0
                   for p in moe.experts[3].parameters())


def test_bf16_moe_close_to_fp32():
    moe = make()
    x = torch.randn(2, 576, 256, device='cuda')
    ref = moe.float()(x)
    out = moe.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    relative = (out - ref).abs().mean() / ref.abs().mean()
    assert relative < 0.02, relative
