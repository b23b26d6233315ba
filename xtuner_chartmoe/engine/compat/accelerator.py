"""No CUDA/NPU: XTuner's device checks answer "no accelerator"."""
import functools

from .log import log


class NoAccelerator:
    """What XTuner's ``get_torch_device()`` should be on a CPU-only machine:
    no accelerator (so DeepSpeed's ``"auto"`` fp16/bf16 resolve to off and
    no bf16 capability is asked of ``torch.cpu``); everything else is
    ``torch.cpu``'s."""

    @staticmethod
    def is_available():
        return False

    @staticmethod
    def is_bf16_supported():
        return False

    @staticmethod
    def device_count():
        return 0

    def __getattr__(self, name):
        import torch
        return getattr(torch.cpu, name)


def no_accelerator(module):
    if module.get_device_name() != 'cpu':
        return False
    original = module.get_torch_device
    module.get_torch_device = functools.wraps(original)(
        lambda: NoAccelerator())
    log('no CUDA/NPU: XTuner device checks answer "no accelerator" '
        '(DeepSpeed fp16/bf16 "auto" -> off)')
    return True
