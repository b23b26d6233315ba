"""InternLM-XComposer2-VL (IXC2) and ChartMoE as one causal LM.

IXC2 (arXiv 2401.16420): CLIP ViT-L/14 at 490 px -> ``vision_proj`` ->
InternLM2 with Partial LoRA. ChartMoE (arXiv 2409.03277) replaces the dense
``vision_proj`` (``Linear -> GELU -> Linear``) by a mixture of four such
MLPs with a top-2 softmax router: this package's MoE connector
(:class:`xtuner_chartmoe.model.MoEProjectorModel`), whose keys are those of
ChartMoE's ``MLPMoE`` (``gate.weight``, ``experts.N.{0,2}.*``).

Top-level modules and the prefixes of the released state dicts: ``model``
(InternLM2), ``vit`` (the vision tower), ``vision_proj``, ``output``.
"""
import torch.nn as nn
import torch.nn.functional as F
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from xtuner_chartmoe.model.configuration_moe_projector import (
    CHARTMOE_EXPERT_NAMES, MoEProjectorConfig)
from xtuner_chartmoe.model.modeling_moe_projector import MoEProjectorModel

from .configuration_ixc2 import IXC2Config
from .modeling_internlm2_plora import InternLM2PLoRAModel
from .modeling_vision import IXC2VisionTower


def build_vision_proj(config):
    """IXC2's dense connector (``0``: Linear(Dv, D), ``1``: GELU, ``2``:
    Linear(D, D)) or, when ``config.num_experts`` is set, ChartMoE's MoE
    connector of that many such MLPs, top-``num_selected`` softmax router."""
    visual = config.vision_config['hidden_size']
    if config.num_experts is None:
        return nn.Sequential(nn.Linear(visual, config.hidden_size), nn.GELU(),
                             nn.Linear(config.hidden_size, config.hidden_size))
    names = (list(CHARTMOE_EXPERT_NAMES)
             if config.num_experts == len(CHARTMOE_EXPERT_NAMES) else None)
    return MoEProjectorModel(MoEProjectorConfig(
        visual_hidden_size=visual, llm_hidden_size=config.hidden_size,
        depth=2, hidden_act='gelu', num_experts=config.num_experts,
        num_selected=config.num_selected, router_type='softmax',
        expert_names=names))


class IXC2ForCausalLM(PreTrainedModel, GenerationMixin):
    """IXC2 / ChartMoE: images and text in, next-token logits out.

    ``encode_images(pixel_values [B, 3, 490, 490]) -> [B, 1225, D]`` visual
    tokens in the LLM's space (D = 4096). ``forward`` takes either
    ``inputs_embeds [B, L, D]`` with ``im_mask [B, L]`` (True on visual
    tokens: the Partial LoRA applies there) or ``input_ids [B, L]`` (text
    only or a decode step: ``im_mask`` is ignored, as in IXC2), plus the
    usual ``attention_mask [B, past + L]``, ``position_ids``,
    ``past_key_values`` (a transformers ``Cache``), ``labels [B, L]``
    (-100 ignored); it returns a ``CausalLMOutputWithPast`` with float32
    ``logits [B, L, vocab]`` (the last ``num_logits_to_keep`` positions
    only when that is > 0, as ``generate`` asks at prefill).
    ``generate(inputs_embeds=..., im_mask=...)`` is transformers'
    generation: the prompt's visual tokens get the PLoRA delta at prefill,
    decode steps none.
    """
    config_class = IXC2Config
    base_model_prefix = 'model'
    main_input_name = 'input_ids'
    _supports_cache_class = True
    _supports_sdpa = True
    _no_split_modules = ['InternLM2DecoderLayer', 'CLIPEncoderLayer']
    # A released folder holds no connector top-k buffer: config.json's
    # num_selected sets it (transformers' from_pretrained need not warn).
    _keys_to_ignore_on_load_missing = [r'^vision_proj\.num_selected$']

    def __init__(self, config: IXC2Config):
        super().__init__(config)
        self.model = InternLM2PLoRAModel(config)
        self.vit = IXC2VisionTower(config.clip_vision_config)
        self.vision_proj = build_vision_proj(config)
        self.output = nn.Linear(config.hidden_size, config.vocab_size,
                                bias=False)
        self._init_llm()
        self.post_init()

    def _init_weights(self, module):
        """Keep each part's own init: CLIP's, the connector's (PyTorch's
        default, as the references), the LLM's (:meth:`_init_llm`)."""

    def _init_llm(self):
        """Normal(0, initializer_range) weights and zero biases for the
        LLM and ``output`` (InternLM2's init; PLoRA ``B`` is not zeroed, as
        in IXC2)."""
        for module in (*self.model.modules(), self.output):
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0,
                                self.config.initializer_range)
                if getattr(module, 'bias', None) is not None:
                    nn.init.zeros_(module.bias)

    def get_input_embeddings(self):
        return self.model.tok_embeddings

    def get_output_embeddings(self):
        return self.output

    @property
    def is_moe(self):
        return self.config.num_experts is not None

    def encode_images(self, pixel_values):
        """``[B, 3, S, S]`` -> ``[B, (S / 14)^2, D]`` visual tokens in the
        LLM's dtype."""
        tokens = self.vision_proj(self.vit(pixel_values))
        return tokens.to(self.output.weight.dtype)

    def embed_tokens(self, input_ids):
        """``[B, L]`` token ids -> ``[B, L, D]`` embeddings."""
        return self.model.tok_embeddings(input_ids)

    def forward(self, input_ids=None, inputs_embeds=None, im_mask=None,
                attention_mask=None, position_ids=None, past_key_values=None,
                labels=None, use_cache=None, cache_position=None,
                num_logits_to_keep=0, return_dict=True, **kwargs):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError('give exactly one of input_ids and inputs_embeds')
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
            im_mask = None  # text only or a decode step: no PLoRA delta
        elif im_mask is not None and im_mask.shape != inputs_embeds.shape[:2]:
            raise ValueError(f'im_mask {tuple(im_mask.shape)} does not match '
                             f'inputs_embeds {tuple(inputs_embeds.shape)}')
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        hidden = self.model(inputs_embeds, im_mask, attention_mask,
                            position_ids, past_key_values)
        logits = self.output(hidden[:, -num_logits_to_keep:]).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]),
                labels[:, 1:].reshape(-1).to(logits.device),
                ignore_index=-100)
        return CausalLMOutputWithPast(
            loss=loss, logits=logits,
            past_key_values=past_key_values if use_cache else None)
