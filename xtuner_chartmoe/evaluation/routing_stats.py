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


class RoutingChange:
    """How the experts chosen for the same tokens differ between two models
    (LibMoE's change of expert choice between checkpoints). Accumulates
    ``update(selected_a [.., k], selected_b [.., k])`` (the same tokens in
    the same order); ``result()`` returns a dict:

    tokens; top1_changed (share of tokens whose best expert differs);
    set_changed (share whose set of k chosen experts differs);
    per_expert {name: share of the tokens whose best expert under A is
    that expert that B sends elsewhere} (None for an expert A never picks);
    transitions [E][E] (tokens with best expert i under A and j under B).
    """

    def __init__(self, num_experts, expert_names=None):
        self.num_experts = num_experts
        self.expert_names = list(expert_names or range(num_experts))
        self.transitions = torch.zeros(num_experts, num_experts,
                                       dtype=torch.long)
        self.set_changes = 0

    @torch.no_grad()
    def update(self, selected_a, selected_b):
        a = selected_a.detach().reshape(-1, selected_a.shape[-1]).cpu()
        b = selected_b.detach().reshape(-1, selected_b.shape[-1]).cpu()
        if a.shape[0] != b.shape[0]:
            raise ValueError(f'{a.shape[0]} tokens routed by A, '
                             f'{b.shape[0]} by B: not the same tokens')
        pairs = a[:, 0] * self.num_experts + b[:, 0]
        self.transitions += torch.bincount(
            pairs, minlength=self.num_experts**2).view(self.num_experts, -1)
        self.set_changes += int((a.sort(-1).values != b.sort(-1).values)
                                .any(-1).sum()) if a.shape == b.shape else \
            a.shape[0]
        return self

    def result(self):
        tokens = int(self.transitions.sum())
        kept = self.transitions.diagonal()
        from_a = self.transitions.sum(1)
        return {
            'tokens': tokens,
            'expert_names': self.expert_names,
            'top1_changed': 1 - int(kept.sum()) / max(tokens, 1),
            'set_changed': self.set_changes / max(tokens, 1),
            'per_expert': {
                name: (1 - int(k) / int(n)) if n else None
                for name, k, n in zip(self.expert_names, kept, from_a)},
            'transitions': self.transitions.tolist(),
        }
