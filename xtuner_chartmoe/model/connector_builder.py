"""Build the MoE connector from dense projector checkpoints (ChartMoE,
arXiv 2409.03277, §3.2; the paper's baselines):

- ``diverse``: one projector per expert (general, table, json, code).
- ``upcycle``: the general projector copied into every expert.
- ``random``:  fresh experts (PyTorch init), sizes from a reference projector
  or given explicitly.

The router is always fresh. The files read and written are in
``connector_formats``.
"""
import os

import torch

from .checkpoint import load_checkpoint
from .configuration_moe_projector import MoEProjectorConfig
from .connector_formats import (DENSE_PROJECTOR_KEY, expert_names_for,
                                load_dense_projector_state)
from .modeling_moe_projector import MoEProjectorModel


def _dense_geometry(state, source):
    """(visual_hidden, llm_hidden, depth, bias) of a dense projector."""
    layer_ids = sorted({int(DENSE_PROJECTOR_KEY.match(k).group(1))
                        for k in state})
    expected_ids = list(range(0, 2 * len(layer_ids) - 1, 2))
    if layer_ids != expected_ids:
        raise ValueError(f'{source}: projector layers {layer_ids}, expected '
                         f'Linear layers at {expected_ids}')
    first = state['model.0.weight']
    return (first.shape[1], first.shape[0], len(layer_ids),
            'model.0.bias' in state)


def _check_same_geometry(states, sources):
    reference = {k: tuple(v.shape) for k, v in states[0].items()}
    for state, source in zip(states[1:], sources[1:]):
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        if shapes != reference:
            diff = sorted(set(shapes.items()) ^ set(reference.items()))
            raise ValueError(
                f'{source}: expert shapes differ from {sources[0]}: '
                f'{diff[:4]} (every expert must have the general projector\'s '
                f'keys and shapes {sorted(reference.items())})')


def build_moe_projector(mode,
                        expert_projectors=(),
                        num_experts=4,
                        num_selected=2,
                        router_type='softmax',
                        router_kwargs=None,
                        expert_names=None,
                        visual_hidden_size=None,
                        llm_hidden_size=None,
                        depth=2,
                        seed=0):
    """Return a :class:`MoEProjectorModel` built in ``mode``.

    ``expert_projectors``: paths readable by
    :func:`load_dense_projector_state`. ``diverse`` needs one per expert
    (``num_experts`` is then their count), ``upcycle`` exactly one, ``random``
    none (give the sizes) or one to copy the sizes from.
    """
    sources = [os.fspath(p) for p in expert_projectors]
    if mode == 'diverse':
        if len(sources) < 2:
            raise ValueError('mode diverse needs one projector per expert '
                             f'(>= 2), got {len(sources)}')
        num_experts = len(sources)
    elif mode == 'upcycle' and len(sources) != 1:
        raise ValueError('mode upcycle needs exactly one (the general) '
                         f'projector, got {len(sources)}')
    elif mode == 'random' and len(sources) > 1:
        raise ValueError('mode random takes at most one reference projector')
    elif mode not in ('diverse', 'upcycle', 'random'):
        raise ValueError(f"unknown mode {mode!r}; expected 'diverse', "
                         "'upcycle' or 'random'")

    states = [load_dense_projector_state(p) for p in sources]
    if states:
        _check_same_geometry(states, sources)
        visual_hidden_size, llm_hidden_size, depth, bias = _dense_geometry(
            states[0], sources[0])
    else:
        bias = True
        if not (visual_hidden_size and llm_hidden_size):
            raise ValueError('mode random without a reference projector needs '
                             'visual_hidden_size and llm_hidden_size')
    if expert_names is None and mode != 'diverse':
        expert_names = [f'expert_{i}' for i in range(num_experts)]
    config = MoEProjectorConfig(
        visual_hidden_size=visual_hidden_size, llm_hidden_size=llm_hidden_size,
        depth=depth, bias=bias, num_experts=num_experts,
        num_selected=num_selected, router_type=router_type,
        router_kwargs=router_kwargs,
        expert_names=expert_names_for(num_experts, expert_names))
    torch.manual_seed(seed)
    moe = MoEProjectorModel(config)
    if mode == 'upcycle':
        states = states * num_experts
    if mode != 'random':
        for expert, state, source in zip(moe.experts, states,
                                         sources * num_experts):
            load_checkpoint(expert, {k[len('model.'):]: v
                                     for k, v in state.items()}, source,
                            strict=True)
    return moe
