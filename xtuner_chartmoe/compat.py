"""Compatibility fixes for the verified stack (XTuner 0.2.0, mmengine 0.10.6,
transformers 4.48, torch 2.13), all in this one file.

Each fix names the module it mends and the condition under which it acts;
where the condition does not hold it leaves the module untouched. When it
acts it logs one line (``xtuner-chartmoe compat: ...``, logger
``xtuner_chartmoe.compat``, level INFO): quiet by default so that tools'
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
                                   refuses mmengine's own          xtuner.tools.utils
                                   training state)
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
import atexit
import datetime
import functools
import importlib.abc
import importlib.util
import inspect
import logging
import os
import sys

LOGGER = logging.getLogger('xtuner_chartmoe.compat')
LOG_ENV = 'XTUNER_CHARTMOE_COMPAT_LOG'
OFF_ENV = 'XTUNER_CHARTMOE_COMPAT'  # '0': no fix at all
_TORCHVISION_SCHEMAS = (
    'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
)
_KEEP = []  # objects that must stay alive (a torch.library.Library)
_APPLIED = set()
GLOO_TEARDOWN_TIMEOUT = datetime.timedelta(seconds=60)


def _log(message):
    if os.environ.get(LOG_ENV) == '1' and not LOGGER.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter('%(message)s'))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False
    LOGGER.info('xtuner-chartmoe compat: %s', message)


def _torch_version():
    import torch
    return tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2])


# -- torchvision_ops ---------------------------------------------------------
def torchvision_ops(spec):
    """Before torchvision is imported: if its C library does not load, declare
    the two operator schemas it registers fake kernels for, so that its
    pure-Python parts (``torchvision.transforms``, used by
    ``xtuner.dataset``) import. The C ops stay unavailable."""
    import glob

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
    _log('torchvision C library does not load beside this torch; declared '
         'the nms/qnms schemas so its Python parts import (C ops off)')
    return True


# -- no_accelerator ----------------------------------------------------------
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
    _log('no CUDA/NPU: XTuner device checks answer "no accelerator" '
         '(DeepSpeed fp16/bf16 "auto" -> off)')
    return True


# -- cpu_torchrun -------------------------------------------------------------
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
    _log('torchrun without CUDA: mmengine starts the process group '
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
        _log(f'a rank did not reach the exit barrier ({err})')
    dist.destroy_process_group()


# -- deepspeed_single_process -----------------------------------------------
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
            _log('DeepSpeed without a launcher: one process (RANK=0, '
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
    uninitialised buffer of the partitions (NaN or 1e30 weights at random,
    in 8 of 24 CPU runs here). On gloo each all-gather is waited for
    before it returns; the handle stays valid (waiting again is free)."""
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
                    _log('gloo: DeepSpeed all-gathers are waited for as they '
                         'are launched (ZeRO-3 waits only for the last)')
                work.wait()
            return work
        return gather

    for name in _GATHERS:
        setattr(module.TorchBackend, name,
                waited(getattr(module.TorchBackend, name)))
    return False  # acting is logged when a gather is first waited for


# -- resume_weights_only -----------------------------------------------------
def _load_own_checkpoint(filename, map_location=None):
    """``torch.load`` of a checkpoint this training run wrote (mmengine
    stores its message hub and numpy state in it)."""
    import torch
    return torch.load(filename, map_location=map_location, weights_only=False)


def resume_loader(module):
    """mmengine's local checkpoint loader with ``weights_only=False`` for the
    run's own checkpoints (``--resume``, ``load_from``), as before torch
    2.6."""
    if _torch_version() < (2, 6):
        return False

    def load_from_local(filename, map_location):
        filename = os.path.expanduser(filename)
        if not os.path.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return _load_own_checkpoint(filename, map_location)

    module.CheckpointLoader.register_scheme(prefixes='', force=True)(
        load_from_local)
    _log('torch >= 2.6: mmengine loads its own local checkpoints with '
         'weights_only=False (resume)')
    return True


def resume_seed(module):
    """XTuner's ``get_seed_from_checkpoint`` (``--resume``) likewise."""
    if _torch_version() < (2, 6):
        return False
    original = module.get_seed_from_checkpoint

    @functools.wraps(original)
    def get_seed_from_checkpoint(pth_model):
        if os.path.isdir(pth_model):  # a DeepSpeed checkpoint folder
            from deepspeed.utils.zero_to_fp32 import get_model_state_files
            pth_model = get_model_state_files(pth_model)[0]
        elif not os.path.isfile(pth_model):
            raise FileNotFoundError(f'Cannot find {pth_model}')
        return _load_own_checkpoint(pth_model, 'cpu')['meta']['seed']

    module.get_seed_from_checkpoint = get_seed_from_checkpoint
    _log('torch >= 2.6: XTuner reads the resume seed with weights_only=False')
    return True


# -- internlm2_generation -----------------------------------------------------
def _is_empty_cache(past_key_values):
    if past_key_values is None:
        return True
    get_seq_length = getattr(past_key_values, 'get_seq_length', None)
    return get_seq_length is not None and get_seq_length() == 0


def fix_internlm2_generation(model_class):
    """Let ``generate(inputs_embeds=...)`` work with InternLM2's remote code
    under transformers >= 4.42, whose ``generate`` passes an empty cache
    where the remote code expects ``None``: the code then keeps the empty
    ``input_ids`` and drops the embeddings ("size of tensor a (0) must match
    the size of tensor b"). On the first step (empty cache) the embeddings
    are fed. Acts on classes named ``InternLM2ForCausalLM`` that define
    their own ``prepare_inputs_for_generation``; idempotent. Returns whether
    the class was changed."""
    import transformers
    version = tuple(int(p) for p in transformers.__version__.split('.')[:2])
    original = model_class.__dict__.get('prepare_inputs_for_generation')
    if (model_class.__name__ != 'InternLM2ForCausalLM' or original is None
            or getattr(original, '_chartmoe_fixed', False)
            or version < (4, 42)):
        return False

    @functools.wraps(original)
    def prepare_inputs_for_generation(self, input_ids, past_key_values=None,
                                      attention_mask=None, inputs_embeds=None,
                                      **kwargs):
        inputs = original(self, input_ids, past_key_values=past_key_values,
                          attention_mask=attention_mask,
                          inputs_embeds=inputs_embeds, **kwargs)
        if inputs_embeds is not None and _is_empty_cache(past_key_values):
            inputs.pop('input_ids', None)
            inputs['inputs_embeds'] = inputs_embeds
        return inputs

    prepare_inputs_for_generation._chartmoe_fixed = True
    model_class.prepare_inputs_for_generation = prepare_inputs_for_generation
    _log(f'{model_class.__module__}.InternLM2ForCausalLM: generate() from '
         'inputs_embeds with an empty cache feeds the embeddings')
    return True


def internlm2_generation(module):
    """Apply :func:`fix_internlm2_generation` to every class transformers
    loads from remote code (``trust_remote_code=True``)."""
    original = module.get_class_in_module

    @functools.wraps(original)
    def get_class_in_module(*args, **kwargs):
        cls = original(*args, **kwargs)
        fix_internlm2_generation(cls)
        return cls

    module.get_class_in_module = get_class_in_module
    return False  # acting is logged per class, when one is fixed


FIXES = (
    ('torchvision', 'before', torchvision_ops),
    ('xtuner.utils.device', 'after', no_accelerator),
    ('mmengine.dist.utils', 'after', cpu_torchrun),
    ('deepspeed.comm.comm', 'after', deepspeed_single_process),
    ('deepspeed.comm.torch', 'after', deepspeed_gloo_gathers),
    ('mmengine.runner.checkpoint', 'after', resume_loader),
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
    pending = {h.name for h in sys.meta_path if isinstance(h, _ImportHook)}
    for name, when, fix in FIXES:
        if name in pending or fix.__name__ in _APPLIED:
            continue
        if name in sys.modules:
            if when == 'after':
                _apply(fix, sys.modules[name])
            continue
        sys.meta_path.insert(0, _ImportHook(name, when, fix))
