"""Data: chart synthesis, validated LLaVA dataset, map-fns."""
from .llava_dataset import (ChartConcatDataset, ChartLLaVADataset,
                            RepeatedDataset, load_records, record_problem)
from .map_fns import (chartgemma_map_fn, chartmoe_map_fn, chartqa_map_fn,
                      chartqa_pot_map_fn, mmc_instruct_map_fn)

__all__ = [
    'ChartConcatDataset', 'ChartLLaVADataset', 'RepeatedDataset',
    'load_records', 'record_problem', 'chartmoe_map_fn', 'chartqa_map_fn',
    'chartqa_pot_map_fn', 'chartgemma_map_fn', 'mmc_instruct_map_fn'
]
