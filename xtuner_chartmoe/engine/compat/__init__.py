"""Compatibility fixes for the verified stack (XTuner 0.2.0, mmengine 0.10.6,
transformers 4.48, torch 2.13): one module per concern in this package,
registered here.

Each fix names the module it mends and the condition under which it acts;
where the condition does not hold it leaves the module untouched. When it
acts it logs one line (``xtuner-chartmoe compat: ...``, logger
``xtuner_chartmoe.engine.compat``, level INFO): quiet by default so that tools'
own messages stay one line; ``XTUNER_CHARTMOE_COMPAT_LOG=1`` shows them on
stderr.

=================================  =============================  =========
fix                                acts when                      module
=================================  =============================  =========
``torchvision_ops``                torchvision's C library        torchvision
                                   cannot load beside this torch
                                   (PyPI torchvision + CPU torch)
``no_accelerator``                 no CUDA/NPU device: XTuner's   xtuner.utils.device
                                   ``get_torch_device()`` returns
                                   ``torch.cpu``, which says it is
                                   available and has no
                                   ``is_bf16_supported``
``cpu_torchrun``                   ``--launcher pytorch`` without  mmengine.dist.utils
                                   CUDA (mmengine calls
                                   ``torch.cuda.set_device``)
``deepspeed_single_process``       DeepSpeed started without a    deepspeed.comm.comm
                                   launcher (no ``RANK`` /
                                   ``WORLD_SIZE``): it would look
                                   for MPI
``deepspeed_gloo_gathers``         an all-gather launched         deepspeed.comm.torch
                                   asynchronously on a gloo
                                   process group (CPU): it is
                                   waited for at once
``resume_weights_only``            torch >= 2.6 (``weights_only``  mmengine.runner.checkpoint,
                                   refuses mmengine's own          mmengine.runner,
                                   training state): only the       xtuner.tools.utils
                                   runner's own checkpoints load
                                   fully
``internlm2_generation``           a remote-code                  transformers.dynamic_module_utils
                                   ``InternLM2ForCausalLM`` whose
                                   ``prepare_inputs_for_generation``
                                   drops ``inputs_embeds`` when
                                   ``generate`` passes an empty
                                   cache (transformers >= 4.42)
=================================  =============================  =========

The package ships a start-up file, ``xtuner_chartmoe_compat.pth``, at the
top of its wheel: any install (wheel, ``pip install .``, ``pip install -e
.``) puts it into site-packages and uninstalling removes it. Its only work
at start-up is :func:`install`: it registers an import hook per fix, which
stays idle until its module is imported (a module already imported is
mended at once). ``XTUNER_CHARTMOE_COMPAT=0`` turns every fix off. The
start-up file does nothing in ``python -S`` runs (the PoT sandbox's
interpreter) and nothing in processes that never import these modules. The
plugin's own code paths also call :func:`install` (``chartmoe train`` /
``convert``) or :func:`fix_internlm2_generation` themselves, so they work
without the start-up file.
"""
import importlib.abc
import importlib.util
import os
import sys

from ...families.llava.internlm2_generation import internlm2_generation
from .accelerator import no_accelerator
from .deepspeed_comm import deepspeed_gloo_gathers, deepspeed_single_process
from .distributed import cpu_torchrun
from .log import LOG_ENV  # noqa: F401
from .resume import resume_loader, resume_seed, trust_runner_checkpoints
from .torchvision_schemas import torchvision_ops
from ..user_errors import install_hook

OFF_ENV = 'XTUNER_CHARTMOE_COMPAT'  # '0': no fix at all
_APPLIED = set()
FIXES = (
    ('torchvision', 'before', torchvision_ops),
    ('xtuner.utils.device', 'after', no_accelerator),
    ('mmengine.dist.utils', 'after', cpu_torchrun),
    ('deepspeed.comm.comm', 'after', deepspeed_single_process),
    ('deepspeed.comm.torch', 'after', deepspeed_gloo_gathers),
    ('mmengine.runner.checkpoint', 'after', resume_loader),
    ('mmengine.runner', 'after', trust_runner_checkpoints),
    ('xtuner.tools.utils', 'after', resume_seed),
    ('transformers.dynamic_module_utils', 'after', internlm2_generation),
)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Runs ``fix`` right before (``when='before'``, given the spec) or right
    after (``'after'``, given the module) the first import of ``name``, then
    steps aside."""

    def __init__(self, name, when, fix):
        self.name, self.when, self.fix = name, when, fix

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None:
            return None
        if self.when == 'before':
            _apply(self.fix, spec)
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_fix(module):
            exec_module(module)
            _apply(self.fix, module)

        spec.loader.exec_module = exec_then_fix
        return spec


def _apply(fix, target):
    if fix.__name__ not in _APPLIED:
        _APPLIED.add(fix.__name__)
        fix(target)


def install():
    """Register the fixes: an import hook for each module not imported yet;
    a module already imported is mended now (an ``after`` fix) or, for a
    ``before`` fix, left as it is (too late to help). Nothing at all when
    ``XTUNER_CHARTMOE_COMPAT=0``."""
    if os.environ.get(OFF_ENV) == '0':
        return
    install_hook()  # a UserError (e.g. QLoRA without CUDA): one line
    pending = {h.name for h in sys.meta_path if isinstance(h, _ImportHook)}
    for name, when, fix in FIXES:
        if name in pending or fix.__name__ in _APPLIED:
            continue
        if name in sys.modules:
            if when == 'after':
                _apply(fix, sys.modules[name])
            continue
        sys.meta_path.insert(0, _ImportHook(name, when, fix))
