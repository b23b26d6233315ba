"""CuMo co-upcycling: every CLIP encoder MLP becomes a top-k MoE of copies.

``upcycle_clip_mlps(clip)`` replaces ``layer.mlp`` of each encoder layer by a
:class:`CLIPMoEMLP` whose experts are copies of that (trained) dense MLP and
records the setting in ``clip.config.chartmoe_mlp_moe``, so that a saved
model can be rebuilt. With equal experts and renormalised weights, the
upcycled encoder computes the dense encoder's hidden states exactly at step
0 (CuMo, arXiv 2405.05949).

Self-contained (imports only its sibling files) like the connector, so that
a transformers-native release can carry it as remote code.
"""
import copy

import torch
import torch.nn as nn

from .modeling_moe_projector import sorted_dispatch
from .routers import build_router

CONFIG_KEY = 'chartmoe_mlp_moe'


class CLIPMoEMLP(nn.Module):
    """Drop-in for ``CLIPMLP``: ``hidden_states [B, T, D] -> [B, T, D]``.

    ``experts``: E copies of the dense MLP; ``gate``: a router of
    ``routers.ROUTERS`` (softmax by default, ``gate.weight [E, D]``);
    ``num_selected``: top-k buffer. The routing of the last call is kept in
    ``last_routing`` (a ``RouterOutput`` over the B*T tokens) for the
    balance / z losses.
    """

    def __init__(self, dense_mlp, hidden_size, num_experts=4, num_selected=2,
                 router_type='softmax', router_kwargs=None):
        super().__init__()
        self.gate = build_router(router_type, hidden_size, num_experts,
                                 **(router_kwargs or {}))
        self.experts = nn.ModuleList(
            copy.deepcopy(dense_mlp) for _ in range(num_experts))
        self.register_buffer('num_selected', torch.tensor(num_selected))
        self.top_k = num_selected
        self.last_routing = None

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

    def forward(self, hidden_states):
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        routing = self.gate(flat, self.top_k)
        self.last_routing = routing
        out = sorted_dispatch(flat, routing.weights, routing.experts,
                              self.experts)
        return out.view_as(hidden_states)


def clip_moe_layers(clip):
    """The :class:`CLIPMoEMLP` modules of a (possibly upcycled) CLIP."""
    return [m for m in clip.modules() if isinstance(m, CLIPMoEMLP)]


def upcycle_clip_mlps(clip, num_experts=4, num_selected=2,
                      router_type='softmax', router_kwargs=None):
    """Turn each encoder MLP of ``clip`` (a ``CLIPVisionModel``) into a
    :class:`CLIPMoEMLP` of copies; returns the new modules."""
    if not 1 <= num_selected <= num_experts:
        raise ValueError(f'num_selected must be in [1, {num_experts}], got '
                         f'{num_selected}')
    if clip_moe_layers(clip):
        raise ValueError('the vision encoder is already upcycled')
    hidden = clip.config.hidden_size
    for layer in clip.vision_model.encoder.layers:
        layer.mlp = CLIPMoEMLP(layer.mlp, hidden, num_experts, num_selected,
                               router_type, router_kwargs).to(
                                   layer.mlp.fc1.weight.dtype)
    setting = {'num_experts': num_experts, 'num_selected': num_selected}
    if router_type != 'softmax' or router_kwargs:
        setting.update(router_type=router_type,
                       router_kwargs=dict(router_kwargs or {}))
    setattr(clip.config, CONFIG_KEY, setting)
    return clip_moe_layers(clip)
