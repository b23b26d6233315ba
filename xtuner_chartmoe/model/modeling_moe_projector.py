"""The ChartMoE MoE connector as a Hugging Face ``PreTrainedModel``.

A sparse MoE block in the shape of Mixtral's and torchtitan's: a router
(``routers.py``), a token dispatcher that sorts the (token, expert) slots by
expert (:func:`dispatch`), the experts run on their contiguous slices
(:func:`run_experts_sliced`, or :func:`run_experts_grouped` as grouped GEMMs
on Hopper), and a combine step that scatters the weighted outputs back to
their tokens (:func:`combine`). :func:`sorted_dispatch` chains the three.

Self-contained (imports only its two sibling files) so that ``save_pretrained``
copies the code next to the weights and
``AutoModel.from_pretrained(path, trust_remote_code=True)`` reloads it anywhere.
"""
from dataclasses import dataclass
from typing import NamedTuple, Optional

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


class Dispatch(NamedTuple):
    """The (token, expert) slots of ``N`` tokens with top-``k``, sorted by
    expert.

    slot_order:     [N*k] index into the flat ``[N, k]`` slots, by expert.
    token_of_slot:  [N*k] token of each sorted slot.
    tokens_per_expert: [E] int64 count of slots per expert (on device).
    """
    slot_order: torch.Tensor
    token_of_slot: torch.Tensor
    tokens_per_expert: torch.Tensor


def dispatch(selected_experts, num_experts):
    """Sort the slots of ``selected_experts [N, k]`` by expert (one stable
    argsort); returns a :class:`Dispatch`."""
    top_k = selected_experts.shape[-1]
    flat = selected_experts.reshape(-1)
    slot_order = flat.argsort(stable=True)
    return Dispatch(slot_order, slot_order // top_k,
                    torch.bincount(flat, minlength=num_experts))


def combine(expert_out, weights, routed, num_tokens):
    """``expert_out [N*k, D]`` (rows in sorted slot order) times the slot
    weights (``weights [N, k]``), summed back per token: ``[N, D]``."""
    slot_weights = weights.reshape(-1)[routed.slot_order].to(expert_out.dtype)
    weighted = expert_out * slot_weights.unsqueeze(-1)
    out = weighted.new_zeros(num_tokens, weighted.shape[-1])
    return out.index_add_(0, routed.token_of_slot, weighted)


def run_experts_sliced(expert_modules, x_sorted, tokens_per_expert):
    """Each expert on its contiguous slice of ``x_sorted [N*k, Dv]``. An
    expert with no token still runs on an empty slice, so its parameters get
    a zero gradient (DDP / ZeRO safe). Costs one host sync (the counts)."""
    chunks = x_sorted.split(tokens_per_expert.tolist())
    return torch.cat([expert(chunk) for expert, chunk in zip(expert_modules,
                                                              chunks)])


def grouped_mm_supported(x, expert_modules):
    """Grouped GEMMs need CUDA bf16 on sm90+, ``torch._grouped_mm``, and
    experts that are ``nn.Sequential`` of ``nn.Linear`` (16-aligned sizes)
    and parameter-free layers (activations)."""
    if not (x.is_cuda and x.dtype == torch.bfloat16
            and hasattr(torch, '_grouped_mm')
            and torch.cuda.get_device_capability(x.device) >= (9, 0)):
        return False
    first = expert_modules[0]
    return isinstance(first, nn.Sequential) and all(
        (isinstance(layer, nn.Linear)
         and all(d % 16 == 0 for d in layer.weight.shape))
        or not any(True for _ in layer.parameters()) for layer in first)


def run_experts_grouped(expert_modules, x_sorted, tokens_per_expert):
    """All experts layer by layer: each ``nn.Linear`` of the E experts as
    one grouped GEMM (weights stacked), biases added per group with
    ``repeat_interleave``; other layers applied to all rows. No host sync.
    Use where :func:`grouped_mm_supported`."""
    offsets = tokens_per_expert.cumsum(0).to(torch.int32)
    hidden = x_sorted
    for i, layer in enumerate(expert_modules[0]):
        if not isinstance(layer, nn.Linear):
            hidden = layer(hidden)
            continue
        weight = torch.stack([e[i].weight for e in expert_modules])
        hidden = torch._grouped_mm(hidden, weight.transpose(-2, -1),
                                   offs=offsets)
        if layer.bias is not None:
            bias = torch.stack([e[i].bias for e in expert_modules])
            hidden = hidden + bias.repeat_interleave(
                tokens_per_expert, dim=0, output_size=hidden.shape[0])
    return hidden


def sorted_dispatch(x, weights, experts, expert_modules,
                    run_experts=run_experts_sliced):
    """Mix expert outputs with one sort instead of a token x expert loop.

    Args:
        x: [N, Dv] tokens. weights: [N, k] mixing weights. experts: [N, k] ids.
        expert_modules: the E expert modules.
        run_experts: ``(expert_modules, x_sorted, tokens_per_expert) ->
            [N*k, D]``, the expert computation.
    Returns:
        [N, D]: ``sum_k weights[n, k] * expert_{experts[n, k]}(x[n])``.
    """
    routed = dispatch(experts, len(expert_modules))
    expert_out = run_experts(expert_modules, x[routed.token_of_slot],
                             routed.tokens_per_expert)
    return combine(expert_out, weights, routed, x.shape[0])


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
    with the routing for losses and analysis. The routing of the last call is
    also kept in ``last_routing``.
    Parameters: ``gate.*`` (the router; ``gate.weight [E, Dv]`` for softmax),
    ``experts.{i}.{0,2}.{weight,bias}``; buffer ``num_selected`` (the current
    top-k, a tensor so that a top-k schedule is checkpointed with the weights;
    kept last in the state dict so that transformers' dtype handling on load
    looks at a float weight first). ``forced_expert`` (not saved) sends every
    token to one expert with weight 1, for per-expert ablations.
    Float parameters load in the dtype asked for; router scores are float32.
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
        self.top_k = config.num_selected  # host copy: no device sync per call
        self._register_state_dict_hook(_num_selected_last)
        self.forced_expert = None
        self.last_routing = None

    def _init_weights(self, module):
        """Keep PyTorch's default init (as the reference does)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + 'num_selected' in state_dict:
            self.top_k = int(state_dict[prefix + 'num_selected'])

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
        self.top_k = top_k

    def route(self, x):
        """Route flat tokens ``x [N, Dv]``; returns a ``RouterOutput``."""
        routing = self.gate(x, self.top_k)
        if self.forced_expert is not None:
            experts = torch.full_like(routing.experts[:, :1], self.forced_expert)
            routing = routing._replace(
                experts=experts, weights=torch.ones_like(experts,
                                                         dtype=torch.float32))
        return routing

    def run_experts(self, x_sorted, tokens_per_expert):
        """The expert computation on slots sorted by expert (override to
        change how experts run); grouped GEMMs where the config asks for
        them and the device can, else one call per expert slice."""
        if self.config.dispatch == 'grouped_mm' and grouped_mm_supported(
                x_sorted, self.experts):
            return run_experts_grouped(self.experts, x_sorted,
                                       tokens_per_expert)
        return run_experts_sliced(self.experts, x_sorted, tokens_per_expert)

    def _mix(self, flat):
        routing = self.route(flat)
        routed = dispatch(routing.experts, self.config.num_experts)
        expert_out = self.run_experts(flat[routed.token_of_slot],
                                      routed.tokens_per_expert)
        out = combine(expert_out, routing.weights, routed, flat.shape[0])
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
        self.last_routing = MoEProjectorOutput(
            last_hidden_state=out, router_logits=logits, router_probs=probs,
            routing_weights=weights, selected_experts=experts)
        return self.last_routing if output_router_logits else out


def _num_selected_last(module, state_dict, prefix, local_metadata):
    state_dict.move_to_end(prefix + 'num_selected')
