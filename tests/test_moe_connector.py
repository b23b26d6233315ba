"""MoE connector: reference equality, upcycling, save/reload, errors."""
import pytest
import torch
from transformers import AutoModel
from xtuner.model.modules import ProjectorConfig, ProjectorModel

from xtuner_chartmoe.model import (MoEProjectorConfig, MoEProjectorModel,
                                   build_moe_projector)

DV, DL = 16, 24


def make_moe(num_experts=4, top_k=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    return MoEProjectorModel(MoEProjectorConfig(
        visual_hidden_size=DV, llm_hidden_size=DL, num_experts=num_experts,
        num_selected=top_k, **kwargs)).eval()


def reference_moe(moe, x):
    """ChartMoE's connector (arXiv 2409.03277, its mlp_moe.py) written out
    token by token: softmax router, top-k renormalised, weighted experts."""
    out = torch.zeros(*x.shape[:-1], DL)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            p = torch.softmax(moe.gate.weight @ x[b, t], -1, dtype=torch.float32)
            w, idx = torch.topk(p, int(moe.num_selected))
            w = w / w.sum()
            out[b, t] = sum(wk * moe.experts[i](x[b, t]) for wk, i in zip(w, idx))
    return out


def save_dense(tmp_path, seed=1, name='dense', dv=DV, dl=DL):
    torch.manual_seed(seed)
    dense = ProjectorModel(ProjectorConfig(visual_hidden_size=dv,
                                           llm_hidden_size=dl)).eval()
    dense.save_pretrained(tmp_path / name)
    return dense, str(tmp_path / name)


@pytest.mark.parametrize('num_experts,top_k', [(4, 2), (4, 1), (6, 3)])
def test_matches_token_loop_reference(num_experts, top_k):
    moe = make_moe(num_experts, top_k)
    x = torch.randn(3, 11, DV)
    out = moe(x, output_router_logits=True)
    assert out.last_hidden_state.shape == (3, 11, DL)
    assert out.router_logits.shape == (3, 11, num_experts)
    assert out.selected_experts.shape == (3, 11, top_k)
    assert out.router_logits.dtype == torch.float32
    torch.testing.assert_close(out.last_hidden_state, reference_moe(moe, x),
                               atol=1e-6, rtol=0)
    # the plain call is a drop-in for XTuner's dense projector
    torch.testing.assert_close(moe(x), out.last_hidden_state)


def test_block_mix_equals_naive_loop():
    moe = make_moe(4, 2)
    x = torch.randn(50, DV)
    weights = torch.rand(50, 2)
    experts = torch.randint(0, 4, (50, 2))
    naive = torch.stack([
        sum(weights[n, k] * moe.experts[experts[n, k]](x[n]) for k in range(2))
        for n in range(50)])
    torch.testing.assert_close(
        moe.mix(x, weights, experts), naive, atol=1e-6, rtol=0)


def test_expert_without_tokens_still_gets_a_gradient():
    moe = make_moe(4, 1).train()
    x = torch.randn(2, 5, DV)
    experts = torch.zeros(10, 1, dtype=torch.long)  # all to expert 0
    out = moe.mix(x.view(10, DV), torch.ones(10, 1), experts)
    out.sum().backward()
    for i in range(1, 4):
        grad = moe.experts[i][0].weight.grad
        assert grad is not None and torch.count_nonzero(grad) == 0
    assert torch.count_nonzero(moe.experts[0][0].weight.grad) > 0


def test_upcycle_equals_dense_projector(tmp_path):
    dense, path = save_dense(tmp_path)
    moe = build_moe_projector('upcycle', [path], num_experts=4).eval()
    x = torch.randn(2, 9, DV)
    torch.testing.assert_close(moe(x), dense(x), atol=1e-6, rtol=0)


def test_upcycle_from_whole_model_checkpoint(tmp_path):
    dense, _ = save_dense(tmp_path)
    state = {'projector.' + k: v for k, v in dense.state_dict().items()}
    state['llm.base_model.lora_A.weight'] = torch.zeros(2, 2)
    torch.save({'state_dict': state}, tmp_path / 'iter_10.pth')
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'last_checkpoint').write_text(
        str(tmp_path / 'iter_10.pth'))
    for source in (tmp_path / 'iter_10.pth', tmp_path / 'run'):
        moe = build_moe_projector('upcycle', [source]).eval()
        x = torch.randn(1, 4, DV)
        torch.testing.assert_close(moe(x), dense(x), atol=1e-6, rtol=0)


def test_diverse_keeps_each_projector_and_names(tmp_path):
    paths, denses = [], []
    for i, name in enumerate(('general', 'table', 'json', 'code')):
        dense, path = save_dense(tmp_path, seed=i, name=name)
        denses.append(dense)
        paths.append(path)
    moe = build_moe_projector('diverse', paths)
    assert moe.config.expert_names == ['general', 'table', 'json', 'code']
    keys = set(moe.state_dict())
    assert {'gate.weight', 'num_selected', 'experts.3.2.bias'} <= keys
    assert moe.gate.weight.shape == (4, DV)
    x = torch.randn(5, DV)
    for expert, dense in zip(moe.experts, denses):
        torch.testing.assert_close(expert(x), dense(x))


def test_random_mode_has_distinct_experts(tmp_path):
    _, path = save_dense(tmp_path)
    moe = build_moe_projector('random', [path])
    assert not torch.equal(moe.experts[0][0].weight, moe.experts[1][0].weight)
    moe2 = build_moe_projector('random', visual_hidden_size=8,
                               llm_hidden_size=12)
    assert moe2.experts[0][0].weight.shape == (12, 8)


def test_save_pretrained_reloads_identically(tmp_path):
    moe = make_moe(4, 2, router_type='softmax',
                   expert_names=['general', 'table', 'json', 'code'])
    moe.save_pretrained(tmp_path / 'moe')
    files = {p.name for p in (tmp_path / 'moe').iterdir()}
    assert {'modeling_moe_projector.py', 'configuration_moe_projector.py',
            'routers.py', 'config.json'} <= files
    reloaded = AutoModel.from_pretrained(tmp_path / 'moe',
                                         trust_remote_code=True).eval()
    assert type(reloaded).__module__.startswith('transformers_modules')
    x = torch.randn(2, 7, DV)
    assert torch.equal(reloaded(x), moe(x))
    assert reloaded.config.expert_names == ['general', 'table', 'json', 'code']


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16,
                                   torch.float16])
def test_reloads_in_each_dtype_with_router_math_in_fp32(tmp_path, dtype):
    """``from_pretrained(torch_dtype=...)`` casts every float parameter (the
    integer ``num_selected`` buffer stays an integer and does not decide the
    cast); routing is computed in fp32 and picks the experts fp32 picks."""
    moe = make_moe(4, 2)
    moe.save_pretrained(tmp_path / 'moe')
    low = AutoModel.from_pretrained(tmp_path / 'moe', trust_remote_code=True,
                                    torch_dtype=dtype).eval()
    assert {p.dtype for p in low.parameters()} == {dtype}
    assert low.num_selected.dtype == torch.int64 and int(low.num_selected) == 2
    x = torch.randn(2, 9, DV)
    out = low(x.to(dtype), output_router_logits=True)
    assert out.last_hidden_state.dtype == dtype
    assert out.router_logits.dtype == torch.float32
    full = moe(x, output_router_logits=True)
    same_top1 = (out.selected_experts[..., 0] == full.selected_experts[..., 0])
    assert same_top1.float().mean() >= 0.9
    tolerance = 0 if dtype == torch.float32 else 0.05
    torch.testing.assert_close(out.last_hidden_state.float(),
                               full.last_hidden_state, atol=tolerance + 1e-6,
                               rtol=tolerance)


def test_gradient_checkpointing_gives_same_gradients():
    moe = make_moe(4, 2).train()
    x = torch.randn(2, 6, DV)
    moe(x).square().sum().backward()
    expected = moe.experts[1][0].weight.grad.clone()
    moe.zero_grad()
    moe.gradient_checkpointing_enable()
    moe(x).square().sum().backward()
    torch.testing.assert_close(moe.experts[1][0].weight.grad, expected)


def test_forced_expert_routes_everything_to_it():
    moe = make_moe(4, 2)
    moe.forced_expert = 2
    x = torch.randn(1, 5, DV)
    out = moe(x, output_router_logits=True)
    assert (out.selected_experts == 2).all()
    torch.testing.assert_close(out.last_hidden_state, moe.experts[2](x))


def test_top_k_larger_than_experts_is_rejected():
    with pytest.raises(ValueError, match='num_selected.*num_experts=4'):
        MoEProjectorConfig(num_experts=4, num_selected=5)
    with pytest.raises(ValueError, match='top_k'):
        make_moe(4, 2).set_top_k(5)


def test_dispatch_setting_is_checked():
    with pytest.raises(ValueError, match="dispatch must be 'slices'"):
        MoEProjectorConfig(dispatch='loop')
    # grouped_mm falls back to slices where it cannot run (here: CPU fp32)
    moe, grouped = make_moe(), make_moe(dispatch='grouped_mm')
    x = torch.randn(2, 5, DV)
    assert torch.equal(moe(x), grouped(x))


def test_unknown_router_is_rejected():
    with pytest.raises(ValueError, match="unknown router_type 'nope'"):
        make_moe(router_type='nope')


def test_wrong_expert_shapes_name_the_file(tmp_path):
    _, good = save_dense(tmp_path, name='general')
    _, bad = save_dense(tmp_path, name='table_bad', dl=DL + 8)
    with pytest.raises(ValueError, match='table_bad: expert shapes differ'):
        build_moe_projector('diverse', [good, bad])


def test_missing_checkpoint_names_the_path(tmp_path):
    _, good = save_dense(tmp_path)
    with pytest.raises(FileNotFoundError, match='not_there.pth'):
        build_moe_projector('diverse', [good, tmp_path / 'not_there.pth'])


def test_checkpoint_without_projector_keys_is_rejected(tmp_path):
    torch.save({'llm.weight': torch.zeros(1)}, tmp_path / 'foreign.pth')
    with pytest.raises(ValueError, match='foreign.pth: no dense projector'):
        build_moe_projector('upcycle', [tmp_path / 'foreign.pth'])


def test_mode_argument_checks():
    with pytest.raises(ValueError, match='unknown mode'):
        build_moe_projector('mixed', [])
    with pytest.raises(ValueError, match='upcycle needs exactly one'):
        build_moe_projector('upcycle', [])
    with pytest.raises(ValueError, match='random without a reference'):
        build_moe_projector('random')
