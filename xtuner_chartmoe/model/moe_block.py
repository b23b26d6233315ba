"""The sparse MoE block shared by the connector and CuMo's CLIP MoE.

In the shape of Hugging Face Mixtral's sparse MoE block and torchtitan's
router / dispatcher / experts split: a router (``routers.py``) picks top-k
experts per token; the dispatcher sorts the (token, expert) slots by expert
(:func:`dispatch`); the experts run on their contiguous slices
(:func:`run_experts_sliced`, or :func:`run_experts_grouped` as grouped GEMMs
on Hopper); :func:`combine` scatters the weighted outputs back to their
tokens. :class:`SparseMoEBlock` chains them and returns the routing next to
its output; :class:`RoutingRecorder` collects the routing of layers whose
callers only take a tensor (XTuner's LLaVA forward, CLIP's encoder layers).

Imports no sibling file: the remote-code files that use it (the connector,
the CLIP MoE, the transformers-native release) import it directly.
"""
from typing import NamedTuple

import torch
import torch.nn as nn


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


def run_experts_sliced(experts, x_sorted, tokens_per_expert):
    """Each of the E ``experts`` on its contiguous slice of ``x_sorted
    [N*k, D_in]`` -> ``[N*k, D_out]``. An expert with no token still runs on
    an empty slice, so its parameters get a zero gradient (DDP / ZeRO safe).
    Costs one host sync (the counts)."""
    chunks = x_sorted.split(tokens_per_expert.tolist())
    return torch.cat([expert(chunk) for expert, chunk in zip(experts, chunks)])


def grouped_mm_supported(x, expert_layers):
    """Grouped GEMMs need CUDA bf16 on sm90+, ``torch._grouped_mm``, and
    experts given as layer sequences (``expert_layers``: one per expert, see
    :meth:`SparseMoEBlock.expert_layers`) of ``nn.Linear`` (16-aligned sizes)
    and parameter-free layers (activations)."""
    if not (x.is_cuda and x.dtype == torch.bfloat16
            and hasattr(torch, '_grouped_mm')
            and torch.cuda.get_device_capability(x.device) >= (9, 0)):
        return False
    if expert_layers[0] is None:
        return False
    return all((isinstance(layer, nn.Linear)
                and all(d % 16 == 0 for d in layer.weight.shape))
               or not any(True for _ in layer.parameters())
               for layer in expert_layers[0])


def run_experts_grouped(expert_layers, x_sorted, tokens_per_expert):
    """All experts layer by layer (``expert_layers``: the E experts' layer
    sequences): each ``nn.Linear`` of the E experts as one grouped GEMM
    (weights stacked), biases added per group with ``repeat_interleave``;
    other layers applied to all rows. ``x_sorted [N*k, D_in] -> [N*k,
    D_out]``, no host sync. Use where :func:`grouped_mm_supported`."""
    offsets = tokens_per_expert.cumsum(0).to(torch.int32)
    hidden = x_sorted
    for i, layer in enumerate(expert_layers[0]):
        if not isinstance(layer, nn.Linear):
            hidden = layer(hidden)
            continue
        weight = torch.stack([layers[i].weight for layers in expert_layers])
        hidden = torch._grouped_mm(hidden, weight.transpose(-2, -1),
                                   offs=offsets)
        if layer.bias is not None:
            bias = torch.stack([layers[i].bias for layers in expert_layers])
            hidden = hidden + bias.repeat_interleave(
                tokens_per_expert, dim=0, output_size=hidden.shape[0])
    return hidden


class SparseMoEBlock(nn.Module):
    """router -> dispatch -> experts -> combine.

    ``forward(x [..., D_in])`` returns ``(out [..., D_out], routing)``,
    ``routing`` the router's ``RouterOutput`` over the ``N`` flat tokens
    (``logits``, ``probs`` [N, E] float32; ``weights`` [N, k] float32;
    ``experts`` [N, k] int64), as Mixtral's block returns its router logits.

    Parameters: ``gate.*`` (a router of ``routers.ROUTERS``, e.g.
    ``gate.weight [E, D_in]``), ``experts.{i}.*`` (E modules ``D_in ->
    D_out``); buffer ``num_selected`` (the top-k, a tensor so that a top-k
    schedule is checkpointed with the weights; kept last in the state dict so
    that transformers' dtype handling on load looks at a float weight
    first). Not saved: ``forced_expert`` (every token to that expert with
    weight 1, for per-expert ablations), ``dispatch`` (``'slices'`` or
    ``'grouped_mm'``: grouped GEMMs where :func:`grouped_mm_supported`) and
    ``recorder`` (a :class:`RoutingRecorder` the wrappers report to).
    """

    def __init__(self, gate, experts, num_selected, dispatch='slices',
                 **kwargs):
        super().__init__(**kwargs)  # kwargs: a co-base's (PreTrainedModel)
        self.gate = gate
        self.experts = nn.ModuleList(experts)
        self.register_buffer('num_selected', torch.tensor(num_selected))
        self.top_k = num_selected  # host copy: no device sync per call
        self._register_state_dict_hook(_num_selected_last)
        self.dispatch = dispatch
        self.forced_expert = None
        self.recorder = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + 'num_selected' in state_dict:
            self.top_k = int(state_dict[prefix + 'num_selected'])

    def set_top_k(self, top_k):
        if not 1 <= top_k <= len(self.experts):
            raise ValueError(f'top_k must be in [1, {len(self.experts)}], got '
                             f'{top_k}')
        self.num_selected.fill_(top_k)
        self.top_k = top_k

    def expert_layers(self, expert):
        """``expert`` as its sequence of layers (for grouped GEMMs), or None
        where it is not one; an ``nn.Sequential`` is its layers."""
        return list(expert) if isinstance(expert, nn.Sequential) else None

    def route(self, x):
        """Route flat tokens ``x [N, D_in]``; returns a ``RouterOutput``."""
        routing = self.gate(x, self.top_k)
        if self.forced_expert is not None:
            experts = torch.full_like(routing.experts[:, :1],
                                      self.forced_expert)
            routing = routing._replace(
                experts=experts,
                weights=torch.ones_like(experts, dtype=torch.float32))
        return routing

    def run_experts(self, x_sorted, tokens_per_expert):
        """The experts on slots sorted by expert: ``[N*k, D_in] -> [N*k,
        D_out]``; grouped GEMMs where ``dispatch`` asks for them and the
        device can, else one call per expert slice."""
        if self.dispatch == 'grouped_mm':
            layers = [self.expert_layers(e) for e in self.experts]
            if grouped_mm_supported(x_sorted, layers):
                return run_experts_grouped(layers, x_sorted,
                                           tokens_per_expert)
        return run_experts_sliced(self.experts, x_sorted, tokens_per_expert)

    def mix(self, x, weights, experts):
        """``x [N, D_in]``, ``weights [N, k]``, ``experts [N, k]`` ->
        ``[N, D_out]``: ``sum_k weights[n, k] * expert_{experts[n, k]}(x[n])``
        with one sort instead of a token x expert loop."""
        routed = dispatch(experts, len(self.experts))
        expert_out = self.run_experts(x[routed.token_of_slot],
                                      routed.tokens_per_expert)
        return combine(expert_out, weights, routed, x.shape[0])

    def forward(self, x):
        flat = x.reshape(-1, x.shape[-1])
        routing = self.route(flat)
        out = self.mix(flat, routing.weights, routing.experts)
        return out.view(*x.shape[:-1], out.shape[-1]), routing

    def report(self, routing):
        """Hand ``routing`` to the attached :class:`RoutingRecorder`, if any
        (for wrappers whose callers take the output tensor only)."""
        if self.recorder is not None:
            self.recorder.record(self, routing)


def _num_selected_last(module, state_dict, prefix, local_metadata):
    state_dict.move_to_end(prefix + 'num_selected')


class RoutingRecorder:
    """Collects the routing of MoE layers whose callers take only their
    output tensor.

    ``RoutingRecorder({name: layer})`` attaches itself to the
    :class:`SparseMoEBlock` layers (one recorder per layer). ``routings``:
    ``{name: RouterOutput of that layer's last call}`` in call order;
    ``clear()`` empties it (before a forward pass).
    """

    def __init__(self, layers):
        self.names = {}
        self.routings = {}
        for name, layer in layers.items():
            layer.recorder = self
            self.names[layer] = name

    def record(self, layer, routing):
        self.routings[self.names[layer]] = routing

    def clear(self):
        self.routings = {}
