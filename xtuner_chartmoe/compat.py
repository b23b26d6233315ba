"""Start-up fixes that let XTuner 0.2.0 run on a CPU-only machine.

``python -m xtuner_chartmoe.compat`` writes a ``.pth`` start-up file into
site-packages (``tools/setup_env.sh`` runs it) so that ``install()`` runs in
every interpreter of the environment, before XTuner or mmengine load. It only
adds import hooks (no heavy import at start-up); each fix acts when its
module is first imported, and the mmengine ones only when CUDA is absent.

1. torchvision: PyPI's wheel ships a C library linked against CUDA torch.
   Beside the CPU torch wheel it cannot load, and ``import torchvision`` dies
   with ``operator torchvision::nms does not exist`` while registering fake
   kernels; XTuner imports ``torchvision.transforms`` from ``xtuner.dataset``.
   Right before torchvision is imported we try to load its C library and,
   only if that fails, declare the two operator schemas it registers fake
   kernels for. The pure-Python parts work; the C ops stay unavailable.
2. mmengine 0.10.6 ``--launcher pytorch`` (torchrun) on CPU: its
   ``_init_dist_pytorch`` calls ``torch.cuda.set_device`` unconditionally and
   its runner wraps the model in DDP with ``device_ids=[LOCAL_RANK]``, which
   DDP refuses for a CPU module. Without CUDA the first becomes a no-op, the
   second passes ``device_ids=None`` (gloo backend from the config), and at
   exit every rank waits for the others and destroys the process group.
3. ``xtuner train --resume`` with torch >= 2.6: XTuner's
   ``get_seed_from_checkpoint`` and mmengine's local checkpoint loader call
   ``torch.load`` with the new ``weights_only=True`` default, which refuses
   the training state mmengine itself wrote (message hub, numpy arrays).
   These two loaders, and only they, read the run's own checkpoints with
   ``weights_only=False``, as they did before torch 2.6.
"""
import atexit
import functools
import importlib.abc
import importlib.util
import os
import sys
import sysconfig

PTH_NAME = 'xtuner_chartmoe_compat.pth'
_OP_SCHEMAS = (
    'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
)
_LIBRARY = []  # keeps the torch.library.Library alive (it unregisters on GC)


def _declare_missing_torchvision_ops(spec):
    import glob

    import torch
    package_dir = list(spec.submodule_search_locations)[0]
    for lib_path in glob.glob(os.path.join(package_dir, '_C*.so')):
        try:
            torch.ops.load_library(lib_path)
            return
        except (OSError, RuntimeError):
            pass
    library = torch.library.Library('torchvision', 'DEF')
    for schema in _OP_SCHEMAS:
        library.define(schema)
    _LIBRARY.append(library)


def _cpu_safe_init_dist(module):
    original = module._init_dist_pytorch

    @functools.wraps(original)
    def init_dist_pytorch(*args, **kwargs):
        import torch
        if torch.cuda.is_available():
            return original(*args, **kwargs)
        set_device, torch.cuda.set_device = torch.cuda.set_device, (
            lambda device: None)
        try:
            result = original(*args, **kwargs)
        finally:
            torch.cuda.set_device = set_device
        atexit.register(_close_process_group)
        return result

    module._init_dist_pytorch = init_dist_pytorch


def _close_process_group():
    """Wait for every rank, then destroy the gloo process group. XTuner's
    train script never does; a rank that exits first (while rank 0 still
    saves its checkpoint) then aborts in gloo's thread teardown
    ("terminate called without an active exception")."""
    import torch.distributed as dist
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _cpu_safe_ddp(module):
    cls = module.MMDistributedDataParallel
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, module, detect_anomalous_params=False, **kwargs):
        import torch
        if not torch.cuda.is_available():
            kwargs['device_ids'] = None
        original(self, module, detect_anomalous_params, **kwargs)

    cls.__init__ = __init__


def _trusting_own_checkpoints(loader):
    """``loader`` with ``torch.load`` defaulting to ``weights_only=False``
    while it runs (it only reads checkpoints the training run wrote)."""

    @functools.wraps(loader)
    def load(*args, **kwargs):
        import torch
        torch_load = torch.load
        torch.load = functools.partial(torch_load, weights_only=False)
        try:
            return loader(*args, **kwargs)
        finally:
            torch.load = torch_load

    return load


def _resume_loader(module):
    module.CheckpointLoader.register_scheme(prefixes='', force=True)(
        _trusting_own_checkpoints(module.load_from_local))


def _resume_seed(module):
    module.get_seed_from_checkpoint = _trusting_own_checkpoints(
        module.get_seed_from_checkpoint)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Runs ``before(spec)`` / ``after(module)`` around the first import of
    ``name``, then steps aside."""

    def __init__(self, name, before=None, after=None):
        self.name, self.before, self.after = name, before, after

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None:
            return None
        if self.before:
            self.before(spec)
        if self.after:
            exec_module = spec.loader.exec_module

            def exec_then_patch(module):
                exec_module(module)
                self.after(module)

            spec.loader.exec_module = exec_then_patch
        return spec


HOOKS = (
    ('torchvision', dict(before=_declare_missing_torchvision_ops)),
    ('mmengine.dist.utils', dict(after=_cpu_safe_init_dist)),
    ('mmengine.model.wrappers.distributed', dict(after=_cpu_safe_ddp)),
    ('mmengine.runner.checkpoint', dict(after=_resume_loader)),
    ('xtuner.tools.utils', dict(after=_resume_seed)),
)


def install():
    """Register the import hooks (for modules not imported yet)."""
    active = {h.name for h in sys.meta_path if isinstance(h, _ImportHook)}
    for name, callbacks in HOOKS:
        if name not in sys.modules and name not in active:
            sys.meta_path.insert(0, _ImportHook(name, **callbacks))


def write_pth_file():
    """Write the start-up file into this environment's site-packages."""
    site_dir = sysconfig.get_paths()['purelib']
    target = os.path.join(site_dir, PTH_NAME)
    tmp = target + '.tmp'
    with open(tmp, 'w') as f:
        f.write('import xtuner_chartmoe.compat as m; m.install()\n')
    os.replace(tmp, target)
    return target


if __name__ == '__main__':
    print(f'wrote {write_pth_file()}')
