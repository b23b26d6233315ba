"""Routing statistics (LibMoE style) over one batch or a whole data set."""
import torch


class RoutingStats:
    """Accumulates routing of ``update(router_probs [.., E],
    selected_experts [.., k])`` calls; ``result()`` returns a dict:

    tokens, top1_counts [E] (tokens whose best expert is e), top1_fraction,
    load [E] (share of all k slots), entropy (mean routing entropy, nats),
    margin (mean top-1 minus top-2 probability).
    """

    def __init__(self, num_experts, expert_names=None):
        self.num_experts = num_experts
        self.expert_names = list(expert_names or range(num_experts))
        self.tokens = 0
        self.top1 = torch.zeros(num_experts, dtype=torch.long)
        self.slots = torch.zeros(num_experts, dtype=torch.long)
        self.entropy_sum = 0.0
        self.margin_sum = 0.0

    @torch.no_grad()
    def update(self, router_probs, selected_experts):
        probs = router_probs.detach().reshape(-1, self.num_experts).float()
        chosen = selected_experts.detach().reshape(probs.shape[0], -1).cpu()
        self.tokens += probs.shape[0]
        self.top1 += torch.bincount(chosen[:, 0], minlength=self.num_experts)
        self.slots += torch.bincount(chosen.reshape(-1),
                                     minlength=self.num_experts)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
        self.entropy_sum += entropy.sum().item()
        if self.num_experts > 1:
            top2 = probs.topk(2, dim=-1).values
            self.margin_sum += (top2[:, 0] - top2[:, 1]).sum().item()
        return self

    def result(self):
        tokens = max(self.tokens, 1)
        slots = max(int(self.slots.sum()), 1)
        return {
            'tokens': self.tokens,
            'expert_names': self.expert_names,
            'top1_counts': self.top1.tolist(),
            'top1_fraction': (self.top1.float() / tokens).tolist(),
            'load': (self.slots.float() / slots).tolist(),
            'entropy': self.entropy_sum / tokens,
            'margin': self.margin_sum / tokens,
        }
