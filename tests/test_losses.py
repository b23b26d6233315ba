import math

import torch

from xtuner_chartmoe.model.losses import balance_loss, router_z_loss


def test_balance_loss_is_one_when_balanced():
    probs = torch.full((8, 4), 0.25)
    top1 = torch.arange(8).remainder(4).unsqueeze(-1)
    assert math.isclose(balance_loss(probs, top1).item(), 1.0, rel_tol=1e-6)


def test_balance_loss_grows_with_imbalance():
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 8)
    top1 = torch.zeros(8, 1, dtype=torch.long)
    # all tokens on expert 0 with p0 = 0.7: 16 * mean([0.7, 0, 0, 0]) = 2.8
    assert math.isclose(balance_loss(probs, top1).item(), 2.8, rel_tol=1e-6)


def test_z_loss_matches_formula():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    expected = (torch.logsumexp(logits, -1)**2).mean()
    assert torch.allclose(router_z_loss(logits), expected)
    assert math.isclose(router_z_loss(torch.zeros(2, 4)).item(),
                        math.log(4)**2, rel_tol=1e-6)
