"""Models: the MoE connector (HF remote-code package) and ``ChartMoEModel``.

The connector needs only transformers; ``ChartMoEModel`` (which needs XTuner)
is imported on first use, so the connector also works where XTuner is not
installed (e.g. a bare inference or benchmark environment).
"""
from transformers import AutoConfig, AutoModel

from .checkpoint import LoadReport, load_checkpoint, load_hf_folder_state
from .clip_vision_loader import load_clip_vision
from .configuration_moe_projector import MoEProjectorConfig
from .connector_builder import build_moe_projector
from .connector_formats import (CHARTMOE_EXPERT_NAMES,
                                connector_from_reference,
                                connector_to_reference, export_reference,
                                load_connector, load_dense_projector_state,
                                write_reference)
from .modeling_clip_moe import CLIPMoEMLP, clip_moe_layers, upcycle_clip_mlps
from .modeling_moe_projector import MoEProjectorModel, MoEProjectorOutput
from .moe_block import (RoutingRecorder, SparseMoEBlock, combine, dispatch,
                        run_experts_grouped, run_experts_sliced)
from .routers import ROUTERS, RouterOutput, build_router

AutoConfig.register(MoEProjectorConfig.model_type, MoEProjectorConfig)
AutoModel.register(MoEProjectorConfig, MoEProjectorModel)


def __getattr__(name):
    if name == 'ChartMoEModel':
        from .chartmoe import ChartMoEModel
        return ChartMoEModel
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = [
    'ChartMoEModel', 'MoEProjectorConfig', 'MoEProjectorModel',
    'MoEProjectorOutput', 'SparseMoEBlock', 'RoutingRecorder', 'dispatch',
    'combine', 'run_experts_sliced', 'run_experts_grouped',
    'build_moe_projector', 'load_connector', 'connector_from_reference',
    'connector_to_reference', 'export_reference', 'write_reference',
    'CHARTMOE_EXPERT_NAMES',
    'load_checkpoint', 'LoadReport', 'load_dense_projector_state',
    'load_hf_folder_state', 'ROUTERS', 'RouterOutput', 'build_router',
    'CLIPMoEMLP', 'clip_moe_layers', 'load_clip_vision', 'upcycle_clip_mlps'
]
