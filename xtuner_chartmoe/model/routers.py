"""Token routers for the MoE layers (ChartMoE SMoE and LibMoE variants).

One interface: a router is an ``nn.Module`` whose ``forward(x [N, D],
top_k)`` returns a :class:`RouterOutput`; it reads its parameters and never
changes them. Scores are computed in float32. Selected weights are
renormalised to sum to 1 per token for every router, so that experts that
are all equal give exactly the dense output (co-upcycling at step 0).

Formulas (ChartMoE, arXiv 2409.03277, §3.2; LibMoE's router zoo; XMoE):

- ``softmax``: ``p = softmax(W x)``; top-k on ``p``.
- ``sigmoid``: ``s = sigmoid(W x)``; top-k on ``s``; ``probs = s / sum(s)``.
- ``cosine`` (XMoE): ``h = W_r x`` (``D -> proj_dim``, default ``E // 2``),
  expert embeddings ``M`` used at norm :data:`COSINE_EMBEDDING_NORM` (the
  rescaling carries no gradient),
  ``p = softmax((h / max(|h|, eps)) . m_e / COSINE_TEMPERATURE)``.
- ``perturbed_cosine``: as cosine with ``h / (|h| + 0.1)`` and
  ``m_e * 1.5 / (|m_e| + 0.1)``.
- ``hyper``: a frozen hypernetwork ``Linear(D, D/4) -> ReLU ->
  Linear(D/4, E*D + E)`` turns a trainable embedding ``[1, D]`` into the
  router's weight and bias, regenerated on every forward (so also after load).
"""
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

COSINE_TEMPERATURE = 0.3  # XMoE's scale of the cosine scores
COSINE_EMBEDDING_NORM = 1.5  # norm the expert embeddings are used at
COSINE_MIN_NORM = 1e-4  # floor of |h| in the cosine router
PERTURBATION = 0.1  # added to both norms by the perturbed cosine router
COSINE_EMBEDDING_INIT_STD = 0.32
HYPER_EMBEDDING_INIT_STD = 0.02


class RouterOutput(NamedTuple):
    """What a router returns for ``N`` tokens, ``E`` experts, top-``k``.

    logits:  [N, E] float32 raw scores (input of the router z-loss).
    probs:   [N, E] float32 normalised scores (balance loss, entropy).
    weights: [N, k] float32 mixing weights of the chosen experts, sum 1.
    experts: [N, k] int64 chosen expert ids, best first.
    """
    logits: torch.Tensor
    probs: torch.Tensor
    weights: torch.Tensor
    experts: torch.Tensor


def select_top_k(logits, probs, top_k):
    """Top-k of ``probs`` with the weights renormalised to sum to 1."""
    weights, experts = torch.topk(probs, top_k, dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return RouterOutput(logits, probs, weights, experts)


class SoftmaxRouter(nn.Module):
    """ChartMoE / SMoE router: ``Linear(D, E, bias=False)``, softmax, top-k.

    Its only parameter is ``weight [E, D]`` so the connector's state dict holds
    ``gate.weight`` as in the reference MoE file.
    """

    def __init__(self, hidden_size, num_experts):
        super().__init__()
        linear = nn.Linear(hidden_size, num_experts, bias=False)  # torch init
        self.weight = linear.weight

    def scores(self, logits):
        """Normalised scores from the raw ``logits [N, E]``."""
        return logits.softmax(dim=-1)

    def forward(self, x, top_k):
        logits = F.linear(x, self.weight).float()
        return select_top_k(logits, self.scores(logits), top_k)


class SigmoidRouter(SoftmaxRouter):
    """Sigmoid router: independent sigmoid scores, top-k, renormalised."""

    def scores(self, logits):
        sigmoid = logits.sigmoid()
        return sigmoid / sigmoid.sum(dim=-1, keepdim=True)


class CosineRouter(nn.Module):
    """XMoE cosine router: low-dim projection, cosine to expert embeddings."""

    def __init__(self, hidden_size, num_experts, proj_dim=None):
        super().__init__()
        proj_dim = proj_dim or max(num_experts // 2, 1)
        self.proj = nn.Linear(hidden_size, proj_dim, bias=False)
        self.expert_embeddings = nn.Parameter(
            torch.randn(num_experts, proj_dim) * COSINE_EMBEDDING_INIT_STD)

    def similarity(self, h):
        """``h [N, proj_dim]`` float32 -> ``[N, E]`` cosine-like scores."""
        m = self.expert_embeddings.float()
        scale = (COSINE_EMBEDDING_NORM / m.norm(dim=-1, keepdim=True)).detach()
        h = h / h.norm(dim=-1, keepdim=True).clamp(min=COSINE_MIN_NORM)
        return h @ (m * scale).t()

    def forward(self, x, top_k):
        logits = self.similarity(self.proj(x).float()) / COSINE_TEMPERATURE
        return select_top_k(logits, logits.softmax(dim=-1), top_k)


class PerturbedCosineRouter(CosineRouter):
    """Cosine router with the perturbation added to both norms (LibMoE)."""

    def similarity(self, h):
        m = self.expert_embeddings.float()
        m = m * COSINE_EMBEDDING_NORM / (m.norm(dim=-1, keepdim=True) +
                                         PERTURBATION)
        h = h / (h.norm(dim=-1, keepdim=True) + PERTURBATION)
        return h @ m.t()


class HyperRouter(nn.Module):
    """Router whose weight ``[E, D]`` and bias ``[E]`` come from a frozen
    hypernetwork applied to a trainable embedding ``[1, D]``."""

    def __init__(self, hidden_size, num_experts):
        super().__init__()
        self.hidden_size, self.num_experts = hidden_size, num_experts
        bottleneck = max(hidden_size // 4, 1)
        self.hypernet = nn.Sequential(
            nn.Linear(hidden_size, bottleneck), nn.ReLU(),
            nn.Linear(bottleneck, num_experts * hidden_size + num_experts))
        self.hypernet.requires_grad_(False)
        self.embedding = nn.Parameter(
            torch.randn(1, hidden_size) * HYPER_EMBEDDING_INIT_STD)

    def generate(self):
        """Return the router ``(weight [E, D], bias [E])`` made now."""
        flat = self.hypernet(self.embedding)[0]
        split = self.num_experts * self.hidden_size
        weight = flat[:split].view(self.num_experts, self.hidden_size)
        return weight, flat[split:]

    def forward(self, x, top_k):
        weight, bias = self.generate()
        logits = F.linear(x, weight, bias).float()
        return select_top_k(logits, logits.softmax(dim=-1), top_k)


ROUTERS = {
    'softmax': SoftmaxRouter,
    'sigmoid': SigmoidRouter,
    'cosine': CosineRouter,
    'perturbed_cosine': PerturbedCosineRouter,
    'hyper': HyperRouter,
}


def build_router(router_type, hidden_size, num_experts, **kwargs):
    """Instantiate ``ROUTERS[router_type]``; unknown names raise ValueError."""
    if router_type not in ROUTERS:
        raise ValueError(f'unknown router_type {router_type!r}; expected one '
                         f'of {sorted(ROUTERS)}')
    return ROUTERS[router_type](hidden_size, num_experts, **kwargs)
