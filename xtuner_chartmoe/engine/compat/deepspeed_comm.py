"""DeepSpeed's communication on a CPU: one process without a launcher, and
gloo all-gathers waited for."""
import functools
import os

from .log import log


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def deepspeed_single_process(module):
    """``xtuner train CFG --deepspeed ...`` in one process (no torchrun):
    DeepSpeed finds no ``RANK`` / ``WORLD_SIZE`` and tries MPI discovery
    (``mpi4py``). Give it the environment of a one-process launch instead,
    as its own launcher would."""
    original = module.init_distributed

    @functools.wraps(original)
    def init_distributed(*args, **kwargs):
        if 'RANK' not in os.environ and 'WORLD_SIZE' not in os.environ:
            single = dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                          MASTER_ADDR='127.0.0.1',
                          MASTER_PORT=str(_free_port()))
            for name, value in single.items():
                os.environ.setdefault(name, value)
            log('DeepSpeed without a launcher: one process (RANK=0, '
                'WORLD_SIZE=1) instead of MPI discovery')
        return original(*args, **kwargs)

    module.init_distributed = init_distributed
    return False  # acting is logged when it acts


# -- deepspeed_gloo_gathers ---------------------------------------------------
_GATHERS = ('all_gather', 'all_gather_into_tensor', 'all_gather_base')


def deepspeed_gloo_gathers(module):
    """DeepSpeed's ZeRO-3 ``_allgather_params_coalesced`` (used by every
    ``GatheredParameters``, e.g. transformers loading a checkpoint under
    ZeRO-3) launches one async all-gather per parameter and waits only for
    the last, which is enough on a CUDA stream where they finish in order.
    Gloo runs them on a pool of threads: an earlier gather can land after
    the wait, overwriting the weights rank 0 has just loaded with the
    uninitialised buffer of the partitions (NaN or 1e30 weights, at
    random). On gloo each all-gather is waited for
    before it returns; the handle stays valid (waiting again is free)."""
    import inspect

    import torch.distributed as dist
    logged = False

    def waited(original):
        signature = inspect.signature(original)

        @functools.wraps(original)
        def gather(*args, **kwargs):
            nonlocal logged
            work = original(*args, **kwargs)  # None unless async_op
            if work is None:
                return work
            group = signature.bind(*args, **kwargs).arguments.get('group')
            if dist.get_backend(group) == 'gloo':
                if not logged:
                    logged = True
                    log('gloo: DeepSpeed all-gathers are waited for as they '
                        'are launched (ZeRO-3 waits only for the last)')
                work.wait()
            return work
        return gather

    for name in _GATHERS:
        setattr(module.TorchBackend, name,
                waited(getattr(module.TorchBackend, name)))
    return False  # acting is logged when a gather is first waited for
