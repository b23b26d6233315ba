"""Configuration of a transformers-native ChartMoE release (remote code,
written by ``pth_to_hf --save-format huggingface``).

``text_config``: the LLM's configuration; ``vision_config``: the CLIP
vision tower's (``chartmoe_mlp_moe`` when CuMo's MoE MLPs are in it);
``projector_config``: the MoE connector's; ``image_token_index``: the id the
processor expands the image into (one per visual token);
``visual_select_layer``: the vision hidden state the connector reads.
"""
from transformers import CLIPVisionConfig, PretrainedConfig

from .configuration_moe_projector import MoEProjectorConfig
from .text_model import text_config_from_dict

# transformers copies a remote module's direct relative imports only; the
# export adds the LLM's configuration file here.


class ChartMoEConfig(PretrainedConfig):
    """Settings of ``ChartMoEForConditionalGeneration`` (see the module
    docstring)."""
    model_type = 'chartmoe'

    def __init__(self, text_config=None, vision_config=None,
                 projector_config=None, image_token_index=None,
                 visual_select_layer=-2, **kwargs):
        self.text_config = (text_config_from_dict(text_config) if isinstance(
            text_config, dict) else text_config)
        self.vision_config = (CLIPVisionConfig(**vision_config) if isinstance(
            vision_config, dict) else vision_config)
        self.projector_config = (MoEProjectorConfig(**projector_config)
                                 if isinstance(projector_config, dict) else
                                 projector_config)
        self.image_token_index = image_token_index
        self.visual_select_layer = visual_select_layer
        super().__init__(**kwargs)
