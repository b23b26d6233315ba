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

from .moe_block import SparseMoEBlock
from .routers import build_router

CONFIG_KEY = 'chartmoe_mlp_moe'


class CLIPMoEMLP(SparseMoEBlock):
    """Drop-in for ``CLIPMLP``: ``hidden_states [B, T, D] -> [B, T, D]``.

    A :class:`~.moe_block.SparseMoEBlock` (a base, so that the keys stay
    ``mlp.gate.*``, ``mlp.experts.*``) whose ``experts`` are E copies of
    the dense MLP (``experts.{i}.fc1|fc2.*``); ``gate``: a router of
    ``routers.ROUTERS`` (softmax by default, ``gate.weight [E, D]``);
    ``num_selected``: top-k buffer. Its routing (a ``RouterOutput`` over the
    B*T tokens) goes to an attached ``RoutingRecorder`` (balance / z losses).
    """

    def __init__(self, dense_mlp, hidden_size, num_experts=4, num_selected=2,
                 router_type='softmax', router_kwargs=None,
                 dispatch='slices'):
        super().__init__(
            build_router(router_type, hidden_size, num_experts,
                         **(router_kwargs or {})),
            [copy.deepcopy(dense_mlp) for _ in range(num_experts)],
            num_selected, dispatch)

    def expert_layers(self, expert):
        return [expert.fc1, expert.activation_fn, expert.fc2]

    def forward(self, hidden_states):
        out, routing = super().forward(hidden_states)
        self.report(routing)
        return out


def clip_moe_layers(clip):
    """The :class:`CLIPMoEMLP` modules of a (possibly upcycled) CLIP."""
    return [m for m in clip.modules() if isinstance(m, CLIPMoEMLP)]


def upcycle_clip_mlps(clip, num_experts=4, num_selected=2,
                      router_type='softmax', router_kwargs=None,
                      dispatch='slices'):
    """Turn each encoder MLP of ``clip`` (a ``CLIPVisionModel``) into a
    :class:`CLIPMoEMLP` of copies; returns the new modules. ``dispatch``:
    ``'slices'`` or ``'grouped_mm'`` (see ``moe_block``)."""
    if not 1 <= num_selected <= num_experts:
        raise ValueError(f'num_selected must be in [1, {num_experts}], got '
                         f'{num_selected}')
    if dispatch not in ('slices', 'grouped_mm'):
        raise ValueError("dispatch must be 'slices' or 'grouped_mm', got "
                         f'{dispatch!r}')
    if clip_moe_layers(clip):
        raise ValueError('the vision encoder is already upcycled')
    hidden = clip.config.hidden_size
    for layer in clip.vision_model.encoder.layers:
        layer.mlp = CLIPMoEMLP(layer.mlp, hidden, num_experts, num_selected,
                               router_type, router_kwargs, dispatch).to(
                                   layer.mlp.fc1.weight.dtype)
    setting = {'num_experts': num_experts, 'num_selected': num_selected}
    if router_type != 'softmax' or router_kwargs:
        setting.update(router_type=router_type,
                       router_kwargs=dict(router_kwargs or {}))
    if dispatch != 'slices':
        setting['dispatch'] = dispatch
    setattr(clip.config, CONFIG_KEY, setting)
    return clip_moe_layers(clip)
