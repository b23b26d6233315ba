"""torch >= 2.6 loads with ``weights_only=True``, which refuses mmengine's
own training checkpoints (message hub, numpy state): ``--resume`` and
``load_from`` fail. Full unpickling is allowed for exactly the checkpoints
the runner was asked to resume or load (while it loads them) and the resume
file XTuner reads its seed from; every other file mmengine loads keeps
``weights_only=True``."""
import contextlib
import functools
import os

from .log import log

_TRUSTED = set()  # real paths of the checkpoints being loaded by the runner


def torch_version():
    import torch
    return tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2])


@contextlib.contextmanager
def trusted(filename):
    """Within this block ``filename`` (the runner's own checkpoint) loads
    with ``weights_only=False``."""
    path = os.path.realpath(os.path.expanduser(filename))
    _TRUSTED.add(path)
    try:
        yield
    finally:
        _TRUSTED.discard(path)


def load_local(filename, map_location=None):
    """``torch.load`` with full unpickling only for a trusted file."""
    import torch
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    own = os.path.realpath(filename) in _TRUSTED
    return torch.load(filename, map_location=map_location,
                      weights_only=not own)


def resume_loader(module):
    """mmengine's local checkpoint loader: :func:`load_local`."""
    if torch_version() < (2, 6):
        return False
    module.CheckpointLoader.register_scheme(prefixes='', force=True)(
        load_local)
    log('torch >= 2.6: mmengine loads the checkpoints its runner resumes or '
        'loads with weights_only=False, any other with weights_only=True')
    return True


def trust_runner_checkpoints(module):
    """``Runner.load_checkpoint`` (``resume`` and ``load_from`` go through
    it) and ``FlexibleRunner``'s trust the file they are given while they
    load it."""
    if torch_version() < (2, 6):
        return False
    for name in ('Runner', 'FlexibleRunner'):
        runner = getattr(module, name, None)
        if runner is None:
            continue
        original = runner.load_checkpoint

        @functools.wraps(original)
        def load_checkpoint(self, filename, *args, _original=original,
                            **kwargs):
            with trusted(filename):
                return _original(self, filename, *args, **kwargs)

        runner.load_checkpoint = load_checkpoint
    return False  # logged by resume_loader


def resume_seed(module):
    """XTuner's ``get_seed_from_checkpoint`` (the ``--resume`` file the user
    named) reads the seed with full unpickling."""
    if torch_version() < (2, 6):
        return False

    def get_seed_from_checkpoint(pth_model):
        if os.path.isdir(pth_model):  # a DeepSpeed checkpoint folder
            from deepspeed.utils.zero_to_fp32 import get_model_state_files
            pth_model = get_model_state_files(pth_model)[0]
        elif not os.path.isfile(pth_model):
            raise FileNotFoundError(f'Cannot find {pth_model}')
        with trusted(pth_model):
            return load_local(pth_model, 'cpu')['meta']['seed']

    module.get_seed_from_checkpoint = functools.wraps(
        module.get_seed_from_checkpoint)(get_seed_from_checkpoint)
    log('torch >= 2.6: XTuner reads the resume seed with weights_only=False')
    return True
