"""Each compatibility fix acts where its condition holds, says so in one
line, and leaves its module alone where it does not."""
import logging
import os
import subprocess
import sys
import types

import pytest
import torch

from xtuner_chartmoe.engine import compat
from xtuner_chartmoe.engine.compat import (accelerator, deepspeed_comm,
                                           distributed, resume)
from xtuner_chartmoe.families.llava import internlm2_generation


@pytest.fixture
def logged(caplog):
    caplog.set_level(logging.INFO, logger='xtuner_chartmoe.engine.compat')
    return lambda: [r.getMessage() for r in caplog.records
                    if r.name == 'xtuner_chartmoe.engine.compat']


def test_no_accelerator_only_without_a_gpu(logged):
    original = lambda: 'torch.cuda'  # noqa: E731
    gpu = types.SimpleNamespace(get_device_name=lambda: 'cuda',
                                get_torch_device=original)
    assert accelerator.no_accelerator(gpu) is False
    assert gpu.get_torch_device is original and logged() == []
    cpu = types.SimpleNamespace(get_device_name=lambda: 'cpu',
                                get_torch_device=original)
    assert accelerator.no_accelerator(cpu) is True
    device = cpu.get_torch_device()
    assert device.is_available() is False
    assert device.is_bf16_supported() is False
    assert device.synchronize is torch.cpu.synchronize  # the rest: torch.cpu
    assert len(logged()) == 1 and 'no accelerator' in logged()[0]


def test_deepspeed_auto_dtypes_resolve_off_without_a_gpu():
    """XTuner's own resolution of "auto" through the fixed device."""
    import xtuner.tools.utils as tools_utils
    config = {'fp16': {'enabled': 'auto'}, 'bf16': {'enabled': 'auto'}}
    resolved = tools_utils.auto_dtype_of_deepspeed_config(config)
    if torch.cuda.is_available():
        pytest.skip('checks the CPU answer')
    assert (resolved['fp16']['enabled'], resolved['bf16']['enabled']) == (
        False, False)


def test_cpu_torchrun_only_without_cuda(monkeypatch, logged):
    original = lambda *a, **k: 'cuda path'  # noqa: E731
    module = types.SimpleNamespace(_init_dist_pytorch=original)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert distributed.cpu_torchrun(module) is False
    assert module._init_dist_pytorch is original and logged() == []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert distributed.cpu_torchrun(module) is True
    assert module._init_dist_pytorch is not original
    assert len(logged()) == 1


def test_deepspeed_single_process_only_without_a_launcher(monkeypatch,
                                                          logged):
    seen = []
    module = types.SimpleNamespace(
        init_distributed=lambda *a, **k: seen.append(dict(os.environ)))
    deepspeed_comm.deepspeed_single_process(module)
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                 'MASTER_PORT'):  # setenv first: undone after the test,
        monkeypatch.setenv(name, '')  # also what the fix sets
        monkeypatch.delenv(name)
    monkeypatch.setenv('RANK', '3')  # launched: left as it is
    monkeypatch.setenv('WORLD_SIZE', '4')
    module.init_distributed()
    assert 'MASTER_PORT' not in seen[-1] and logged() == []
    monkeypatch.delenv('RANK')
    monkeypatch.delenv('WORLD_SIZE')
    module.init_distributed()
    env = seen[-1]
    assert (env['RANK'], env['WORLD_SIZE'], env['LOCAL_RANK']) == ('0', '1',
                                                                   '0')
    assert int(env['MASTER_PORT']) > 0 and len(logged()) == 1


class _Work:
    """A collective's handle that counts how often it is waited for."""

    def __init__(self):
        self.waits = 0

    def wait(self):
        self.waits += 1


def _backend_module():
    """A ``deepspeed.comm.torch`` whose gathers have DeepSpeed's
    signatures and return a :class:`_Work` when ``async_op``."""
    def gather(self, output_tensor, input_tensor, group=None,
               async_op=False):
        return _Work() if async_op else None

    def all_gather(self, tensor_list, tensor, group=None, async_op=False):
        return _Work() if async_op else None

    backend = type('TorchBackend', (), {
        'all_gather': all_gather, 'all_gather_into_tensor': gather,
        'all_gather_base': gather})
    return types.SimpleNamespace(TorchBackend=backend)


def test_deepspeed_gloo_gathers_are_waited_for_at_launch(monkeypatch,
                                                         logged):
    """ZeRO-3 waits only for the last of a series of async all-gathers: on
    gloo each one is complete when it returns; elsewhere (NCCL streams
    keep them in order) the handle is left to the caller."""
    module = _backend_module()
    assert deepspeed_comm.deepspeed_gloo_gathers(module) is False
    backend = module.TorchBackend()
    monkeypatch.setattr(torch.distributed, 'get_backend',
                        lambda group=None: 'nccl')
    assert backend.all_gather_into_tensor(
        output_tensor=1, input_tensor=2, async_op=True).waits == 0
    assert logged() == []
    monkeypatch.setattr(torch.distributed, 'get_backend',
                        lambda group=None: 'gloo')
    for call in (
            lambda: backend.all_gather_into_tensor(
                output_tensor=1, input_tensor=2, group=None, async_op=True),
            lambda: backend.all_gather_base(1, 2, None, True),
            lambda: backend.all_gather([1], 2, async_op=True)):
        assert call().waits == 1
    assert backend.all_gather([1], 2) is None  # synchronous: nothing to wait
    assert len(logged()) == 1 and 'gloo' in logged()[0]


def test_deepspeed_gloo_gathers_mend_deepspeed_itself():
    pytest.importorskip('deepspeed')
    code = ('from xtuner_chartmoe.engine import compat; compat.install()\n'
            'from deepspeed.comm.torch import TorchBackend as B\n'
            'print(all(hasattr(getattr(B, n), "__wrapped__")'
            ' for n in compat.deepspeed_comm._GATHERS))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True)
    assert out.stdout.split()[-1:] == ['True'], out.stderr


def test_resume_loaders_only_with_torch_2_6(monkeypatch, tmp_path, logged):
    import numpy as np
    checkpoint = tmp_path / 'iter_1.pth'
    torch.save({'meta': {'seed': 7}, 'message_hub': np.array([1.5])},
               checkpoint)
    with pytest.raises(Exception):  # what the fixes are for
        torch.load(checkpoint)
    monkeypatch.setattr(resume, 'torch_version', lambda: (2, 5))
    module = types.SimpleNamespace(get_seed_from_checkpoint=len)
    assert resume.resume_seed(module) is False
    assert module.get_seed_from_checkpoint is len and logged() == []
    monkeypatch.setattr(resume, 'torch_version', lambda: (2, 13))
    assert resume.resume_seed(module) is True
    assert module.get_seed_from_checkpoint(str(checkpoint)) == 7
    from mmengine.runner.checkpoint import CheckpointLoader
    with pytest.raises(Exception):  # any file: weights only
        CheckpointLoader.load_checkpoint(str(checkpoint))

    class Runner:  # what the runner loads (resume, load_from) loads fully
        def load_checkpoint(self, filename, map_location='cpu'):
            return CheckpointLoader.load_checkpoint(filename, map_location)

    resume.trust_runner_checkpoints(types.SimpleNamespace(Runner=Runner))
    loaded = Runner().load_checkpoint(str(checkpoint))
    assert loaded['message_hub'][0] == 1.5  # mmengine's own loader, fixed
    with pytest.raises(Exception):  # and only while it loads it
        CheckpointLoader.load_checkpoint(str(checkpoint))


def test_internlm2_generation_fix_acts_on_that_class_once(monkeypatch,
                                                          logged):
    def prepare(self, input_ids, past_key_values=None, attention_mask=None,
                inputs_embeds=None, **kwargs):
        return {'input_ids': input_ids}

    other = type('LlamaForCausalLM', (), {'prepare_inputs_for_generation':
                                          prepare})
    assert internlm2_generation.fix_internlm2_generation(other) is False
    internlm2 = type('InternLM2ForCausalLM', (),
                     {'prepare_inputs_for_generation': prepare})
    monkeypatch.setattr('transformers.__version__', '4.41.2')
    assert internlm2_generation.fix_internlm2_generation(internlm2) is False
    monkeypatch.setattr('transformers.__version__', '4.48.0')
    assert internlm2_generation.fix_internlm2_generation(internlm2) is True
    assert internlm2_generation.fix_internlm2_generation(internlm2) is False  # idempotent
    assert len(logged()) == 1
    embeds, ids = torch.zeros(1, 3, 4), torch.zeros(1, 0, dtype=torch.long)
    first = internlm2().prepare_inputs_for_generation(
        ids, past_key_values=None, inputs_embeds=embeds)
    assert first['inputs_embeds'] is embeds and 'input_ids' not in first
    cache = types.SimpleNamespace(get_seq_length=lambda: 3)
    later = internlm2().prepare_inputs_for_generation(
        ids, past_key_values=cache, inputs_embeds=embeds)
    assert 'inputs_embeds' not in later


def test_torchvision_ops_declared_only_when_its_library_fails(tmp_path):
    """In a fresh interpreter (torchvision not imported yet): a folder whose
    C library does not load gets the schemas; one whose loads does not."""
    (tmp_path / '_C.so').write_bytes(b'not a shared object')
    code = ('import importlib.machinery as m, torch\n'
            'from xtuner_chartmoe.engine.compat import torchvision_schemas\n'
            f'spec = m.ModuleSpec("torchvision", None, is_package=True)\n'
            f'spec.submodule_search_locations = [{str(tmp_path)!r}]\n'
            'torch.ops.load_library = lambda path: None\n'
            'print(torchvision_schemas.torchvision_ops(spec))\n'
            'del torch.ops.load_library\n'
            'print(torchvision_schemas.torchvision_ops(spec))\n'
            'print(hasattr(torch.ops.torchvision, "qnms"))\n')
    for shown in ('1', '0'):  # the notice on stderr only when asked for
        env = dict(os.environ, **{compat.LOG_ENV: shown})
        out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                             text=True, env=env)
        assert out.stdout.split() == ['False', 'True', 'True'], out.stderr
        assert ('declared the nms/qnms schemas' in out.stderr) == (
            shown == '1'), out.stderr


def test_install_mends_an_imported_module_now_and_hooks_the_others(
        monkeypatch):
    calls = []

    def mend_now(module):
        calls.append(module)

    def mend_later(module):
        calls.append(module)

    fake = types.ModuleType('chartmoe_fake_imported')
    monkeypatch.setitem(sys.modules, 'chartmoe_fake_imported', fake)
    monkeypatch.setattr(compat, 'FIXES', (
        ('chartmoe_fake_imported', 'after', mend_now),
        ('chartmoe_fake_later', 'after', mend_later),
    ))
    monkeypatch.setattr(compat, '_APPLIED', set())
    monkeypatch.setattr(sys, 'meta_path', list(sys.meta_path))
    compat.install()
    assert calls == [fake]  # mended at once, not silently skipped
    assert any(isinstance(h, compat._ImportHook)
               and h.name == 'chartmoe_fake_later' for h in sys.meta_path)


def test_start_up_file_is_not_read_by_isolated_interpreters():
    """The PoT sandbox's interpreter runs with -I -S: no site, no .pth."""
    out = subprocess.run([sys.executable, '-I', '-S', '-c',
                          'import sys; print("xtuner_chartmoe.engine.compat" in '
                          'sys.modules)'], capture_output=True, text=True)
    assert out.stdout.strip() == 'False'
