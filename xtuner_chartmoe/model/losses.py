"""Auxiliary router losses (CuMo / Switch style), computed in float32."""
import torch
import torch.nn.functional as F


def balance_loss(router_probs, selected_experts):
    """Switch balance loss ``E^2 * mean_e(P_e * f_e)``.

    router_probs: [N, E] normalised scores; selected_experts: [N, k] (column 0
    is the top-1). ``P_e``: mean score of expert e, ``f_e``: fraction of tokens
    whose top-1 is e. Equals 1.0 for perfectly balanced routing.
    """
    num_experts = router_probs.shape[-1]
    probs = router_probs.reshape(-1, num_experts).float()
    top1 = selected_experts.reshape(-1, selected_experts.shape[-1])[:, 0]
    fraction = F.one_hot(top1, num_experts).float().mean(0)
    return num_experts**2 * (probs.mean(0) * fraction).mean()


def router_z_loss(router_logits):
    """``mean(logsumexp(logits)^2)`` over tokens: keeps logits small."""
    logits = router_logits.reshape(-1, router_logits.shape[-1]).float()
    return torch.logsumexp(logits, dim=-1).square().mean()
