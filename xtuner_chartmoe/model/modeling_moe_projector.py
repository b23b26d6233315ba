"""The ChartMoE MoE connector as a Hugging Face ``PreTrainedModel``: a
:class:`~.moe_block.SparseMoEBlock` of MLP projectors between the vision
tower and the LLM.

Self-contained (imports only its sibling files, each directly) so that
``save_pretrained`` copies the code next to the weights and
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
from .moe_block import SparseMoEBlock
from .routers import RouterOutput, build_router


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


@dataclass
class MoEProjectorOutput(ModelOutput):
    """Output of :class:`MoEProjectorModel` for input ``[B, T, Dv]``.

    last_hidden_state: [B, T, Dl] visual tokens in the LLM's space.
    router_logits:     [B, T, E] float32 raw router scores.
    router_probs:      [B, T, E] float32 normalised router scores.
    routing_weights:   [B, T, k] float32 weights of the chosen experts.
    selected_experts:  [B, T, k] int64 chosen experts, best first.
    ``routing``: the four as the block's ``RouterOutput`` ([B, T, ...]).
    """
    last_hidden_state: torch.FloatTensor = None
    router_logits: Optional[torch.FloatTensor] = None
    router_probs: Optional[torch.FloatTensor] = None
    routing_weights: Optional[torch.FloatTensor] = None
    selected_experts: Optional[torch.LongTensor] = None

    @property
    def routing(self):
        return RouterOutput(self.router_logits, self.router_probs,
                            self.routing_weights, self.selected_experts)


class MoEProjectorModel(SparseMoEBlock, PreTrainedModel):
    """Sparse MoE of MLP projectors between the vision tower and the LLM.

    ``forward(x [B, T, visual_hidden_size])`` returns the mixed tokens
    ``[B, T, llm_hidden_size]``, a drop-in for XTuner's dense
    ``ProjectorModel`` (its chat tool and EvaluateChatHook work unchanged);
    with ``output_router_logits=True`` it returns a :class:`MoEProjectorOutput`
    with the routing for losses and analysis. Either way the routing
    (``RouterOutput``, [B, T, ...]) goes to an attached ``RoutingRecorder``.
    The model is the block (:class:`~.moe_block.SparseMoEBlock`, a base
    rather than a submodule, so that saved keys have no prefix), which gives
    the parameters ``gate.*`` (the router; ``gate.weight [E, Dv]`` for
    softmax) and ``experts.{i}.{0,2}.{weight,bias}`` (``build_expert``), the
    buffer ``num_selected``, ``set_top_k``, ``forced_expert`` and the
    dispatch (``config.dispatch``). Float parameters load in the dtype asked
    for; router scores are float32.
    """
    _auto_class = 'AutoModel'
    config_class = MoEProjectorConfig
    base_model_prefix = 'moe'
    supports_gradient_checkpointing = True
    _no_split_modules = []

    def __init__(self, config: MoEProjectorConfig):
        super().__init__(
            gate=build_router(config.router_type, config.visual_hidden_size,
                              config.num_experts, **config.router_kwargs),
            experts=[build_expert(config) for _ in range(config.num_experts)],
            num_selected=config.num_selected, dispatch=config.dispatch,
            config=config)
        self.gradient_checkpointing = False

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

    def forward(self, x, output_router_logits=False):
        if self.gradient_checkpointing and self.training:
            out, routing = self._gradient_checkpointing_func(
                super().forward, x)
        else:
            out, routing = super().forward(x)
        routing = RouterOutput(*(t.reshape(*x.shape[:-1], t.shape[-1])
                                 for t in routing))
        self.report(routing)
        if not output_router_logits:
            return out
        return MoEProjectorOutput(out, *routing)
