"""Models: the MoE connector (HF remote-code package) and ``ChartMoEModel``.

The connector needs only transformers; ``ChartMoEModel`` (which needs XTuner)
is imported on first use, so the connector also works where XTuner is not
installed (e.g. a bare inference or benchmark environment).
"""
from transformers import AutoConfig, AutoModel

from .checkpoint import LoadReport, load_checkpoint
from .clip_moe import CLIPMoEMLP, load_clip_vision, upcycle_clip_mlps
from .configuration_moe_projector import MoEProjectorConfig
from .modeling_moe_projector import (MoEProjectorModel, MoEProjectorOutput,
                                     combine, dispatch, run_experts_grouped,
                                     run_experts_sliced, sorted_dispatch)
from .moe_builder import (CHARTMOE_EXPERT_NAMES, build_moe_projector,
                          connector_from_reference, connector_to_reference,
                          export_reference, load_connector,
                          load_dense_projector_state, load_hf_folder_state)
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
    'MoEProjectorOutput', 'dispatch', 'combine', 'run_experts_sliced',
    'run_experts_grouped', 'sorted_dispatch', 'build_moe_projector',
    'load_connector', 'connector_from_reference', 'connector_to_reference',
    'export_reference',
    'CHARTMOE_EXPERT_NAMES', 'load_checkpoint', 'LoadReport',
    'load_dense_projector_state', 'load_hf_folder_state', 'ROUTERS',
    'RouterOutput', 'build_router', 'CLIPMoEMLP', 'load_clip_vision',
    'upcycle_clip_mlps'
]
