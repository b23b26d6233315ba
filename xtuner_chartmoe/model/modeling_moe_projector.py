"""The ChartMoE MoE connector as a Hugging Face ``PreTrainedModel``.

Self-contained (imports only its two sibling files) so that ``save_pretrained``
copies the code next to the weights and
``AutoModel.from_pretrained(path, trust_remote_code=True)`` reloads it anywhere.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

from .configuration_moe_projector import MoEProjectorConfig
from .routers import build_router


def build_expert(config):
    """One expert: XTuner's ``ProjectorModel.model`` layout
    (``Linear(Dv, Dl)``, then ``depth - 1`` times ``act, Linear(Dl, Dl)``)."""
    layers = [nn.Linear(config.visual_hidden_size, config.llm_hidden_size,
                        bias=config.bias)]
    for _ in range(1, config.depth):
        layers.append(ACT2FN[config.hidden_act])
        layers.append(nn.Linear(config.llm_hidden_size, config.llm_hidden_size,
                                bias=config.bias))
    return nn.Sequential(*layers)


def _grouped_mm_supported(x, expert_modules):
    """Grouped GEMM path: CUDA bf16 on sm90+, depth-2 experts with bias and
    16-aligned sizes, and a torch that has ``torch._grouped_mm``."""
    if not (x.is_cuda and x.dtype == torch.bfloat16
            and hasattr(torch, '_grouped_mm')
            and torch.cuda.get_device_capability(x.device) >= (9, 0)):
        return False
    first = expert_modules[0]
    return (len(first) == 3 and first[0].bias is not None
            and all(d % 16 == 0 for d in first[0].weight.shape))


def _grouped_experts(x_sorted, counts, expert_modules):
    """All experts in two grouped GEMMs; rows of ``x_sorted`` are grouped by
    expert (``counts`` rows each). Biases are added per group (a broadcast
    add, whose backward is a plain row sum). Returns [M, Dl]."""
    offsets = counts.cumsum(0).to(torch.int32)
    sizes = counts.tolist()

    def add_bias(y, layer):
        return torch.cat([chunk + e[layer].bias for chunk, e in zip(
            y.split(sizes), expert_modules)])

    w1 = torch.stack([e[0].weight for e in expert_modules]).transpose(-2, -1)
    w2 = torch.stack([e[2].weight for e in expert_modules]).transpose(-2, -1)
    hidden = add_bias(torch._grouped_mm(x_sorted, w1, offs=offsets), 0)
    hidden = expert_modules[0][1](hidden)
    return add_bias(torch._grouped_mm(hidden, w2, offs=offsets), 2)


def sorted_dispatch(x, weights, experts, expert_modules, grouped=False):
    """Mix expert outputs with one sort instead of a token x expert loop.

    Args:
        x: [N, Dv] tokens. weights: [N, k] mixing weights. experts: [N, k] ids.
        expert_modules: the E expert modules.
        grouped: run the experts as grouped GEMMs (falls back to slices
            where ``torch._grouped_mm`` cannot run them).
    Returns:
        [N, Dl]: ``sum_k weights[n, k] * expert_{experts[n, k]}(x[n])``.

    Tokens are sorted by expert once; each expert then runs once on its
    contiguous slice (or all experts as two grouped GEMMs). An expert that
    gets no token still takes part (empty slice / empty group), so its
    parameters get a zero gradient (DDP / ZeRO safe).
    """
    top_k = experts.shape[-1]
    flat_experts = experts.reshape(-1)
    order = flat_experts.argsort(stable=True)
    token_of_slot = order // top_k
    counts = torch.bincount(flat_experts, minlength=len(expert_modules))
    slot_weights = weights.reshape(-1)[order].to(x.dtype).unsqueeze(-1)
    x_sorted = x[token_of_slot]
    if grouped and _grouped_mm_supported(x, expert_modules):
        y_sorted = _grouped_experts(x_sorted, counts, expert_modules)
    else:
        y_sorted = torch.cat([
            expert(chunk) for expert, chunk in zip(
                expert_modules, x_sorted.split(counts.tolist()))
        ])
    y_sorted = y_sorted * slot_weights
    out = y_sorted.new_zeros(x.shape[0], y_sorted.shape[-1])
    return out.index_add_(0, token_of_slot, y_sorted)


@dataclass
class MoEProjectorOutput(ModelOutput):
    """Output of :class:`MoEProjectorModel` for input ``[B, T, Dv]``.

    last_hidden_state: [B, T, Dl] visual tokens in the LLM's space.
    router_logits:     [B, T, E] float32 raw router scores.
    router_probs:      [B, T, E] float32 normalised router scores.
    routing_weights:   [B, T, k] float32 weights of the chosen experts.
    selected_experts:  [B, T, k] int64 chosen experts, best first.
    """
    last_hidden_state: torch.FloatTensor = None
    router_logits: Optional[torch.FloatTensor] = None
    router_probs: Optional[torch.FloatTensor] = None
    routing_weights: Optional[torch.FloatTensor] = None
    selected_experts: Optional[torch.LongTensor] = None


class MoEProjectorModel(PreTrainedModel):
    """Sparse MoE of MLP projectors between the vision tower and the LLM.

    ``forward(x [B, T, visual_hidden_size])`` returns the mixed tokens
    ``[B, T, llm_hidden_size]``, a drop-in for XTuner's dense
    ``ProjectorModel`` (its chat tool and EvaluateChatHook work unchanged);
    with ``output_router_logits=True`` it returns a :class:`MoEProjectorOutput`
    with the routing for losses and analysis.
    Parameters: ``gate.*`` (the router; ``gate.weight [E, Dv]`` for softmax),
    ``experts.{i}.{0,2}.{weight,bias}``; buffer ``num_selected`` (the current
    top-k, a tensor so that a top-k schedule is checkpointed with the weights).
    ``forced_expert`` (not saved) sends every token to one expert with weight 1,
    for per-expert ablations.
    """
    _auto_class = 'AutoModel'
    config_class = MoEProjectorConfig
    base_model_prefix = 'moe'
    supports_gradient_checkpointing = True
    _no_split_modules = []

    def __init__(self, config: MoEProjectorConfig):
        super().__init__(config)
        self.gradient_checkpointing = False
        self.gate = build_router(config.router_type, config.visual_hidden_size,
                                 config.num_experts, **config.router_kwargs)
        self.experts = nn.ModuleList(
            build_expert(config) for _ in range(config.num_experts))
        self.register_buffer('num_selected',
                             torch.tensor(config.num_selected))
        self.forced_expert = None

    def _init_weights(self, module):
        """Keep PyTorch's default init (as the reference does)."""

    def enable_input_require_grads(self):
        """As XTuner's ``ProjectorModel``: expert outputs require grad even
        when neither the input nor the experts do (checkpointed LLM below)."""
        for expert in self.experts:
            expert.register_forward_hook(
                lambda module, inputs, output: output.requires_grad_(True))

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        """Non-reentrant checkpointing: parameter grads flow even if the
        input does not require grad."""
        super().gradient_checkpointing_enable(
            gradient_checkpointing_kwargs or {'use_reentrant': False})

    def set_top_k(self, top_k):
        if not 1 <= top_k <= self.config.num_experts:
            raise ValueError(f'top_k must be in [1, {self.config.num_experts}]'
                             f', got {top_k}')
        self.num_selected.fill_(top_k)

    def route(self, x):
        """Route flat tokens ``x [N, Dv]``; returns a ``RouterOutput``."""
        routing = self.gate(x, int(self.num_selected))
        if self.forced_expert is not None:
            experts = torch.full_like(routing.experts[:, :1], self.forced_expert)
            routing = routing._replace(
                experts=experts, weights=torch.ones_like(experts,
                                                         dtype=torch.float32))
        return routing

    def _mix(self, flat):
        routing = self.route(flat)
        out = sorted_dispatch(flat, routing.weights, routing.experts,
                              self.experts,
                              grouped=self.config.dispatch == 'grouped_mm')
        return (out, ) + tuple(routing)

    def forward(self, x, output_router_logits=False):
        batch_shape = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        if self.gradient_checkpointing and self.training:
            outs = self._gradient_checkpointing_func(self._mix, flat)
        else:
            outs = self._mix(flat)
        out, logits, probs, weights, experts = (
            t.reshape(*batch_shape, t.shape[-1]) for t in outs)
        if not output_router_logits:
            return out
        return MoEProjectorOutput(last_hidden_state=out, router_logits=logits,
                                  router_probs=probs, routing_weights=weights,
                                  selected_experts=experts)
