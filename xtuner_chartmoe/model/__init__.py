"""Models: the MoE connector (HF remote-code package) and ``ChartMoEModel``."""
from transformers import AutoConfig, AutoModel

from .chartmoe import ChartMoEModel
from .configuration_moe_projector import MoEProjectorConfig
from .modeling_moe_projector import (MoEProjectorModel, MoEProjectorOutput,
                                     sorted_dispatch)
from .moe_builder import build_moe_projector, load_dense_projector_state
from .routers import ROUTERS, RouterOutput, build_router

AutoConfig.register(MoEProjectorConfig.model_type, MoEProjectorConfig)
AutoModel.register(MoEProjectorConfig, MoEProjectorModel)

__all__ = [
    'ChartMoEModel', 'MoEProjectorConfig', 'MoEProjectorModel',
    'MoEProjectorOutput', 'sorted_dispatch', 'build_moe_projector',
    'load_dense_projector_state', 'ROUTERS', 'RouterOutput', 'build_router'
]
