"""DeepSpeed, the engine the real configs name, on CPU with XTuner's own
``--deepspeed deepspeed_zero2`` / ``deepspeed_zero3``: two processes train
the tiny SFT (MoE + LoRA) like a plain run, the pre-finetune under ZeRO-3,
``pth_to_hf`` and ``--resume`` from the DeepSpeed checkpoint folder."""
import glob
import os.path as osp

import pytest
import torch

from conftest import REPO, run_tool, training_losses
from xtuner_chartmoe.engine.run_log import last_checkpoint

CFG = osp.join(REPO, 'configs', 'chartmoe', 'tiny')
SFT = osp.join(CFG, 'chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft.py')
PREFINETUNE = osp.join(
    CFG, 'chartmoe_tiny_llama_tiny_clip_full_e3_cpu_prefinetune.py')
COMMON = ['train_dataloader.dataset.times=3', 'randomness.seed=0',
          'model.llm_lora.lora_dropout=0']

pytest.importorskip('deepspeed')


def train(workspace, config, work_dir, nproc=2, zero='deepspeed_zero2',
          options=(), resume=None):
    launcher = (['-m', 'torch.distributed.run', '--standalone',
                 '--nproc_per_node', str(nproc)] if nproc > 1 else [])
    run_tool([*launcher, '-m', 'xtuner.tools.train', config, '--work-dir',
              work_dir, *(['--launcher', 'pytorch'] if nproc > 1 else []),
              *(['--deepspeed', zero] if zero else []),
              *(['--resume', resume] if resume else []),
              '--cfg-options', *options], cwd=workspace)
    return workspace / work_dir


def trained_state(path):
    from xtuner.model.utils import guess_load_checkpoint
    return guess_load_checkpoint(path)


@pytest.fixture(scope='module')
def zero2_runs(workspace, tiny_connector):
    """The tiny SFT: plain (1 process, batch 4) and ZeRO-2 (2 processes,
    batch 2 each), same global batch and steps (54), a checkpoint half-way.
    No LoRA dropout, so that a resumed run can repeat the run exactly
    (mmengine does not checkpoint the RNG)."""
    common = COMMON + ['default_hooks.checkpoint.interval=27',
                       'default_hooks.checkpoint.max_keep_ckpts=-1']
    plain = train(workspace, SFT, 'work_dirs/sft_plain', nproc=1, zero=None,
                  options=common + ['train_dataloader.batch_size=4'])
    zero2 = train(workspace, SFT, 'work_dirs/sft_zero2',
                  options=common + ['train_dataloader.batch_size=2'])
    return plain, zero2


def test_zero2_two_processes_follow_the_plain_run(zero2_runs):
    plain, zero2 = (training_losses(d) for d in zero2_runs)
    assert len(plain) == len(zero2) >= 10
    # rank 0 logs its half of the batch: compare means over the run and
    # over its end, and require both to learn
    assert abs(sum(plain) / len(plain) - sum(zero2) / len(zero2)) < 0.1
    assert abs(sum(plain[-4:]) / 4 - sum(zero2[-4:]) / 4) < 0.15
    for curve in (plain, zero2):
        assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3 - 0.1


def test_zero2_checkpoint_is_a_folder_with_the_trained_parts(zero2_runs):
    plain, zero2 = (trained_state(last_checkpoint(d)) for d in zero2_runs)
    assert osp.isdir(last_checkpoint(zero2_runs[1]))
    assert set(plain) == set(zero2)
    assert 'projector.gate.weight' in zero2
    assert any('lora_A' in k for k in zero2)
    log = ''.join(open(p).read() for p in glob.glob(
        str(zero2_runs[1] / '*' / '*.log')))
    # XTuner's "auto" fp16/bf16 resolved to off (no accelerator here)
    assert 'bf16=dict(enabled=False)' in log
    assert 'fp16=dict(enabled=False' in log


def test_pth_to_hf_from_the_deepspeed_folder(workspace, zero2_runs):
    checkpoint = last_checkpoint(zero2_runs[1])
    run_tool(['-m', 'xtuner.tools.model_converters.pth_to_hf', SFT,
              checkpoint, 'work_dirs/sft_zero2_hf'], cwd=workspace)
    from transformers import AutoModel
    projector = AutoModel.from_pretrained(
        workspace / 'work_dirs/sft_zero2_hf/projector', trust_remote_code=True)
    trained = trained_state(checkpoint)
    assert torch.equal(projector.gate.weight, trained['projector.gate.weight'])
    adapter = workspace / 'work_dirs/sft_zero2_hf/llm_adapter'
    assert (adapter / 'adapter_config.json').is_file()
    assert list(adapter.glob('adapter_model.*'))


def test_resume_from_the_deepspeed_folder(workspace, zero2_runs):
    """Resume the ZeRO-2 run from its middle checkpoint folder: it ends
    where the uninterrupted run ended."""
    zero2 = zero2_runs[1]
    middle = zero2 / 'iter_27.pth'
    assert middle.is_dir()
    resumed = train(workspace, SFT, 'work_dirs/sft_zero2_resumed',
                    resume=str(middle),
                    options=COMMON + ['train_dataloader.batch_size=2'])
    end, resumed_end = (trained_state(last_checkpoint(d))
                        for d in (zero2, resumed))
    assert osp.basename(last_checkpoint(resumed)) == osp.basename(
        last_checkpoint(zero2))
    for key, value in end.items():
        torch.testing.assert_close(resumed_end[key], value, atol=1e-4,
                                   rtol=1e-3)
    # only the second half
    assert len(training_losses(resumed)) < len(training_losses(zero2))


def test_zero3_prefinetune_trains_the_whole_model(workspace):
    work_dir = train(workspace, PREFINETUNE, 'work_dirs/prefinetune_zero3',
                     zero='deepspeed_zero3',
                     options=['train_dataloader.dataset.times=2',
                              'train_dataloader.batch_size=2'])
    curve = training_losses(work_dir)
    assert len(curve) >= 5 and curve[-1] < curve[0] - 0.1
    checkpoint = last_checkpoint(work_dir)
    assert glob.glob(osp.join(checkpoint, '*zero_pp_rank_1*'))  # sharded
    state = trained_state(checkpoint)
    assert any(k.startswith('llm.model.layers.') for k in state)
    assert any(k.startswith('visual_encoder.vision_model.') for k in state)
    assert state['projector.model.0.weight'].shape == (128, 64)
    run_tool(['-m', 'xtuner.tools.model_converters.pth_to_hf', PREFINETUNE,
              checkpoint, 'work_dirs/prefinetune_zero3_hf'], cwd=workspace)
    hf = workspace / 'work_dirs/prefinetune_zero3_hf'
    from transformers import AutoModelForCausalLM
    llm = AutoModelForCausalLM.from_pretrained(hf)  # the whole LLM
    torch.testing.assert_close(
        llm.model.layers[0].mlp.up_proj.weight,
        state['llm.model.layers.0.mlp.up_proj.weight'].to(torch.float16)
        .float(), atol=1e-3, rtol=0)  # pth_to_hf saves fp16
    assert (hf / 'visual_encoder' / 'config.json').is_file()
