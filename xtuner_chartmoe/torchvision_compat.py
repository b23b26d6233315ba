"""Make PyPI's torchvision importable beside the CPU build of torch.

PyPI's torchvision wheel ships a C library linked against CUDA torch. Beside the
CPU wheel of torch that library cannot load, and ``import torchvision`` dies with
``operator torchvision::nms does not exist`` while registering fake kernels. XTuner
imports ``torchvision.transforms`` from ``xtuner.dataset``, so every ``xtuner train``
would fail.

``install()`` puts a finder in front of ``sys.meta_path`` that, right before
torchvision is first imported, tries to load its C library and, only if that
fails, declares the two operator schemas torchvision registers fake kernels for.
The pure-Python parts (transforms, datasets) then import and work; the C ops stay
unavailable, exactly as when torchvision is built without them.

``python -m xtuner_chartmoe.torchvision_compat`` writes a ``.pth`` start-up file
into site-packages so that the fix is active in every interpreter of the
environment (``setup_env`` in the README runs it).
"""
import importlib.abc
import os
import sys
import sysconfig

PTH_NAME = 'xtuner_chartmoe_torchvision.pth'
_OP_SCHEMAS = (
    'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
)
_LIBRARY = []  # keeps the torch.library.Library alive (it unregisters on GC)


def _declare_missing_ops(package_dir):
    import glob

    import torch
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


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Runs ``_declare_missing_ops`` once, when ``torchvision`` is imported."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'torchvision':
            return None
        sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec('torchvision')
        if spec is not None and spec.submodule_search_locations:
            _declare_missing_ops(list(spec.submodule_search_locations)[0])
        return spec


def install():
    """Activate the fix in this interpreter (no-op if torchvision is loaded)."""
    if 'torchvision' in sys.modules:
        return
    if not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())


def write_pth_file():
    """Write the start-up file into this environment's site-packages."""
    site_dir = sysconfig.get_paths()['purelib']
    target = os.path.join(site_dir, PTH_NAME)
    tmp = target + '.tmp'
    with open(tmp, 'w') as f:
        f.write('import xtuner_chartmoe.torchvision_compat as m; m.install()\n')
    os.replace(tmp, target)
    return target


if __name__ == '__main__':
    print(f'wrote {write_pth_file()}')
