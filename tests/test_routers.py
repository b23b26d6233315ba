"""Each router against a direct implementation of its formula (ChartMoE's
SMoE router; LibMoE's sigmoid, cosine, perturbed cosine and hyper routers)."""
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from xtuner_chartmoe.model import (ROUTERS, MoEProjectorConfig,
                                   MoEProjectorModel, build_router)

D, E = 16, 4


def renormalised_topk(scores, k):
    w, idx = torch.topk(scores, k, dim=-1)
    return w / w.sum(-1, keepdim=True), idx


def direct_softmax(router, x, k):
    logits = x @ router.weight.t()
    p = torch.softmax(logits, -1)
    return p, *renormalised_topk(p, k)


def direct_sigmoid(router, x, k):
    s = torch.sigmoid(x @ router.weight.t())
    return s / s.sum(-1, keepdim=True), *renormalised_topk(s, k)


def direct_cosine(router, x, k):
    m = router.expert_embeddings.detach().clone()
    m = m * 1.5 / m.norm(dim=-1, keepdim=True)
    h = x @ router.proj.weight.t()
    h = h / torch.clamp(h.norm(dim=-1, keepdim=True), min=1e-4)
    p = torch.softmax((h @ m.t()) / 0.3, -1)
    return p, *renormalised_topk(p, k)


def direct_perturbed_cosine(router, x, k):
    m = router.expert_embeddings
    m = m * 1.5 / (m.norm(dim=-1, keepdim=True) + 0.1)
    h = x @ router.proj.weight.t()
    h = h / (h.norm(dim=-1, keepdim=True) + 0.1)
    p = torch.softmax((h @ m.t()) / 0.3, -1)
    return p, *renormalised_topk(p, k)


def direct_hyper(router, x, k):
    lin1, lin2 = router.hypernet[0], router.hypernet[2]
    flat = F.relu(router.embedding @ lin1.weight.t() + lin1.bias)
    flat = (flat @ lin2.weight.t() + lin2.bias)[0]
    weight, bias = flat[:E * D].view(E, D), flat[E * D:]
    p = torch.softmax(x @ weight.t() + bias, -1)
    return p, *renormalised_topk(p, k)


DIRECT = {'softmax': direct_softmax, 'sigmoid': direct_sigmoid,
          'cosine': direct_cosine, 'perturbed_cosine': direct_perturbed_cosine,
          'hyper': direct_hyper}


def test_every_registered_router_has_a_direct_check():
    assert set(ROUTERS) == set(DIRECT)


@pytest.mark.parametrize('name', sorted(DIRECT))
@pytest.mark.parametrize('k', [1, 2])
def test_router_matches_formula(name, k):
    torch.manual_seed(0)
    router = build_router(name, D, E)
    x = torch.randn(32, D)
    expected_probs, expected_w, expected_idx = DIRECT[name](router, x, k)
    out = router(x, k)
    assert out.logits.dtype == torch.float32
    torch.testing.assert_close(out.probs, expected_probs, atol=1e-6, rtol=0)
    assert torch.equal(out.experts, expected_idx)
    torch.testing.assert_close(out.weights, expected_w, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(32))


@pytest.mark.parametrize('name', sorted(ROUTERS))
@pytest.mark.parametrize('training', [True, False])
def test_forward_never_changes_router_parameters(name, training):
    router = build_router(name, D, E).train(training)
    before = {k: v.clone() for k, v in router.state_dict().items()}
    router(torch.randn(4, D), 2)
    for key, value in router.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_cosine_scores_use_embeddings_at_norm_1_5_without_gradient():
    """The rescaling to norm 1.5 is in the forward, not in the parameter,
    and carries no gradient: the gradient is the one of the rescaled
    embedding times the (constant) scale."""
    router = build_router('cosine', D, E)
    h = torch.randn(6, router.proj.out_features)
    router.similarity(h).sum().backward()
    m = router.expert_embeddings.detach()
    scale = 1.5 / m.norm(dim=-1, keepdim=True)
    unit_h = h / h.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(router.expert_embeddings.grad,
                               unit_h.sum(0).expand_as(m) * scale)


def test_hyper_router_hypernet_is_frozen_and_embedding_trains():
    router = build_router('hyper', D, E)
    assert not any(p.requires_grad for p in router.hypernet.parameters())
    router(torch.randn(8, D), 2).probs.square().sum().backward()
    assert router.embedding.grad is not None
    assert router.embedding.grad.abs().sum() > 0


@pytest.mark.parametrize('name', sorted(DIRECT))
def test_router_saved_and_reloaded_by_save_pretrained(name, tmp_path):
    torch.manual_seed(0)
    moe = MoEProjectorModel(MoEProjectorConfig(
        visual_hidden_size=D, llm_hidden_size=24, num_experts=E,
        router_type=name)).eval()
    moe.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path,
                                         trust_remote_code=True).eval()
    assert reloaded.config.router_type == name
    x = torch.randn(2, 9, D)
    a = moe(x, output_router_logits=True)
    b = reloaded(x, output_router_logits=True)
    assert torch.equal(a.selected_experts, b.selected_experts)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state,
                               atol=1e-6, rtol=0)


def test_hyper_router_regenerated_after_load_follows_the_new_embedding(
        tmp_path):
    torch.manual_seed(0)
    moe = MoEProjectorModel(MoEProjectorConfig(
        visual_hidden_size=D, llm_hidden_size=24, router_type='hyper'))
    with torch.no_grad():
        moe.gate.embedding.add_(1.0)  # "trained" embedding
    moe.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    w_saved, b_saved = moe.gate.generate()
    w_loaded, b_loaded = reloaded.gate.generate()
    torch.testing.assert_close(w_loaded, w_saved)
    torch.testing.assert_close(b_loaded, b_saved)
