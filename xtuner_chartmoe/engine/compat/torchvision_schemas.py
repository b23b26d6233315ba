"""torchvision's C library does not load beside this torch (PyPI
torchvision links CUDA torch): declare the schemas its pure-Python parts need."""
import glob
import os

from .log import log

_TORCHVISION_SCHEMAS = (
    'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
)
_KEEP = []  # objects that must stay alive (a torch.library.Library)


def torchvision_ops(spec):
    """Before torchvision is imported: if its C library does not load, declare
    the two operator schemas it registers fake kernels for, so that its
    pure-Python parts (``torchvision.transforms``, used by
    ``xtuner.dataset``) import. The C ops stay unavailable."""
    import torch
    package_dir = list(spec.submodule_search_locations)[0]
    for lib_path in glob.glob(os.path.join(package_dir, '_C*.so')):
        try:
            torch.ops.load_library(lib_path)
            return False
        except (OSError, RuntimeError):
            pass
    library = torch.library.Library('torchvision', 'DEF')
    for schema in _TORCHVISION_SCHEMAS:
        library.define(schema)
    _KEEP.append(library)
    log('torchvision C library does not load beside this torch; declared '
        'the nms/qnms schemas so its Python parts import (C ops off)')
    return True
