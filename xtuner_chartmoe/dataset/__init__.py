"""Data: chart synthesis, validated LLaVA dataset, map-fns.

The names below are imported on first use (PEP 562), so that what needs
only a light module of this package (``hub_files`` for the benchmark
loaders, ``synthesize``) does not import XTuner's dataset stack
(``xtuner.dataset``: seconds)."""
import importlib

_MODULE_OF = {
    **dict.fromkeys(('ChartConcatDataset', 'ChartLLaVADataset',
                     'RepeatedDataset', 'load_records', 'record_problem'),
                    'llava_dataset'),
    **dict.fromkeys(('chartmoe_map_fn', 'chartqa_map_fn', 'chartqa_pot_map_fn',
                     'chartgemma_map_fn', 'mmc_instruct_map_fn'), 'map_fns')}

__all__ = list(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    module = importlib.import_module(f'.{_MODULE_OF[name]}', __name__)
    return getattr(module, name)
