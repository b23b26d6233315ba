"""torchrun without CUDA: mmengine's process-group start and a clean
teardown of gloo groups."""
import atexit
import datetime

from .log import log

GLOO_TEARDOWN_TIMEOUT = datetime.timedelta(seconds=60)


def cpu_torchrun(module):
    """mmengine's ``_init_dist_pytorch`` without its
    ``torch.cuda.set_device`` when there is no CUDA; at exit every rank
    waits (with a timeout, so a dead rank cannot hang the others) and the
    process group is destroyed, which XTuner never does (without it a rank
    that exits first aborts in gloo's teardown)."""
    import torch
    if torch.cuda.is_available():
        return False

    def init_dist_pytorch(backend, init_backend='torch', **kwargs):
        import torch.distributed as dist
        if init_backend == 'deepspeed':
            import deepspeed
            deepspeed.init_distributed(dist_backend=backend, **kwargs)
        elif init_backend == 'torch':
            dist.init_process_group(backend=backend, **kwargs)
        else:
            raise ValueError(f'init_backend {init_backend!r} is not '
                             'supported without CUDA')
        atexit.register(close_process_group)

    module._init_dist_pytorch = init_dist_pytorch
    log('torchrun without CUDA: mmengine starts the process group '
        'without torch.cuda.set_device')
    return True


def close_process_group():
    import torch.distributed as dist
    if not dist.is_initialized():
        return
    try:
        if dist.get_backend() == 'gloo':
            dist.monitored_barrier(timeout=GLOO_TEARDOWN_TIMEOUT)
        else:
            dist.barrier()
    except RuntimeError as err:  # a rank died: tear down anyway
        log(f'a rank did not reach the exit barrier ({err})')
    dist.destroy_process_group()
