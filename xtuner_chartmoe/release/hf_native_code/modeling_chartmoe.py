"""A transformers-native ChartMoE release: CLIP vision tower (with CuMo's
MoE MLPs where trained so), the MoE connector as the multi-modal projector,
the LLM with its LoRA merged. Remote code written by ``pth_to_hf
--save-format huggingface``; load it with
``AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True)``.

``forward(input_ids, pixel_values, attention_mask, ...)``: the image
tokens of ``input_ids`` (``config.image_token_index``, one per visual token,
as the processor writes them) take the connector's output, the rest the
LLM's embeddings; returns a :class:`ChartMoECausalLMOutput` (with the
routing when ``output_router_logits=True``). ``generate`` feeds the image
on the first step only.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from transformers import CLIPVisionModel, GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_chartmoe import ChartMoEConfig
from .configuration_moe_projector import MoEProjectorConfig  # noqa: F401
from .modeling_clip_moe import CONFIG_KEY, upcycle_clip_mlps
from .modeling_moe_projector import MoEProjectorModel
from .moe_block import SparseMoEBlock  # noqa: F401
from .routers import build_router  # noqa: F401
from .text_model import build_text_model

# transformers copies a remote module's direct relative imports only: the
# files above are imported here for that, and the export adds the LLM's.


@dataclass
class ChartMoECausalLMOutput(ModelOutput):
    """loss, logits [B, L, V], past_key_values; with
    ``output_router_logits``: router_logits [B, T, E] (float32) and
    selected_experts [B, T, k] of the image's visual tokens."""
    loss: Optional[torch.FloatTensor] = None
    logits: torch.FloatTensor = None
    past_key_values: Optional[Tuple] = None
    router_logits: Optional[torch.FloatTensor] = None
    selected_experts: Optional[torch.LongTensor] = None


class ChartMoEForConditionalGeneration(PreTrainedModel, GenerationMixin):
    """The release as one transformers model (see the module docstring)."""
    config_class = ChartMoEConfig
    base_model_prefix = ''
    main_input_name = 'input_ids'
    _supports_cache_class = True
    _no_split_modules = []

    def __init__(self, config: ChartMoEConfig):
        super().__init__(config)
        self.vision_tower = CLIPVisionModel(config.vision_config)
        moe = getattr(config.vision_config, CONFIG_KEY, None)
        if moe:
            upcycle_clip_mlps(self.vision_tower, **moe)
        self.multi_modal_projector = MoEProjectorModel(config.projector_config)
        self.language_model = build_text_model(config.text_config)

    def _init_weights(self, module):
        """The weights come from the release."""

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def image_routing(self, pixel_values):
        """pixel_values [B, 3, H, W] -> the connector's
        ``MoEProjectorOutput`` for the B images ([B, T, D] visual tokens)."""
        hidden = self.vision_tower(
            pixel_values.to(self.vision_tower.dtype),
            output_hidden_states=True).hidden_states
        features = hidden[self.config.visual_select_layer][:, 1:]
        return self.multi_modal_projector(features, output_router_logits=True)

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None,
                position_ids=None, past_key_values=None, inputs_embeds=None,
                labels=None, use_cache=None, cache_position=None,
                output_router_logits=False, **kwargs):
        routing = None
        if inputs_embeds is None:
            image_mask = input_ids == self.config.image_token_index
            inputs_embeds = self.get_input_embeddings()(
                input_ids.masked_fill(image_mask, 0))
            if pixel_values is not None and image_mask.any():
                routing = self.image_routing(pixel_values)
                tokens = routing.last_hidden_state.to(inputs_embeds.dtype)
                if int(image_mask.sum()) != tokens.shape[0] * tokens.shape[1]:
                    raise ValueError(
                        f'{int(image_mask.sum())} image tokens in input_ids '
                        f'for {tokens.shape[0]} images of {tokens.shape[1]} '
                        'visual tokens each')
                inputs_embeds = inputs_embeds.masked_scatter(
                    image_mask.unsqueeze(-1), tokens.reshape(
                        -1, tokens.shape[-1]))
        extra = {} if cache_position is None else {
            'cache_position': cache_position}
        outputs = self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            position_ids=position_ids, past_key_values=past_key_values,
            labels=labels, use_cache=use_cache, return_dict=True, **extra)
        return ChartMoECausalLMOutput(
            loss=outputs.loss, logits=outputs.logits,
            past_key_values=outputs.past_key_values,
            router_logits=routing.router_logits if (
                routing is not None and output_router_logits) else None,
            selected_experts=routing.selected_experts if (
                routing is not None and output_router_logits) else None)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None,
                                      attention_mask=None, pixel_values=None,
                                      cache_position=None, use_cache=True,
                                      **kwargs):
        first = past_key_values is None or (
            hasattr(past_key_values, 'get_seq_length')
            and past_key_values.get_seq_length() == 0)
        position_ids = None
        if attention_mask is not None:  # left padding: count real tokens
            position_ids = attention_mask.long().cumsum(-1) - 1
            position_ids.masked_fill_(attention_mask == 0, 1)
        if not first:
            input_ids = input_ids[:, -1:]
            position_ids = None if position_ids is None else \
                position_ids[:, -1:]
            if cache_position is not None:
                cache_position = cache_position[-1:]
        return {'input_ids': input_ids, 'attention_mask': attention_mask,
                'position_ids': position_ids,
                'past_key_values': past_key_values, 'use_cache': use_cache,
                'cache_position': cache_position,
                'pixel_values': pixel_values if first else None}
