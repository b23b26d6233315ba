"""The chart benchmarks of ChartMoE (arXiv 2409.03277) on one evaluation
seam: :mod:`.base` (what a benchmark is), :mod:`.runner` (batched
generation, resumable prediction caches, sandboxed PoT, results files),
one module per benchmark (:mod:`.chartqa`, ...)."""
import importlib
import pkgutil

from ...engine.user_errors import UserError
from .base import BENCHMARKS


def registered():
    """``{name: Benchmark subclass}`` of every benchmark module in this
    package (each module is imported, which registers it), sorted."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f'{__name__}.{module.name}')
    return dict(sorted(BENCHMARKS.module_dict.items()))


def get_benchmark(name):
    """The benchmark registered as ``name`` (an instance); an unknown name
    raises a :class:`UserError` naming those there are."""
    benchmarks = registered()
    if name not in benchmarks:
        raise UserError(f'no benchmark {name!r}; there are: '
                          f'{", ".join(benchmarks)} (chartmoe eval --list)')
    return benchmarks[name]()
