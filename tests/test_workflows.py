"""Users' workflows: copy + edit a config, 2-process training, kill/resume."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, run_tool, training_losses
from xtuner_chartmoe.commands.cli import config_paths, copy_config, main
from xtuner_chartmoe.engine.run_log import last_checkpoint

ALIGN = osp.join(REPO, 'configs', 'chartmoe', 'tiny',
                 'chartmoe_tiny_llama_tiny_clip_align_table_e3_cpu.py')


def projector_of(work_dir):
    state = torch.load(last_checkpoint(work_dir), map_location='cpu',
                       weights_only=False)
    return state['state_dict'], state['meta']['iter']


def test_list_and_copy(tmp_path, capsys):
    assert main(['list-cfg', '-p', 'ALIGN_JSON']) == 0
    names = capsys.readouterr().out.split()
    assert names == ['chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_'
                     'align_json_e1_gpu8',
                     'chartmoe_internlm_xcomposer2_vl_7b_align_json_e1_gpu4',
                     'chartmoe_tiny_ixc2_align_json_e3_cpu',
                     'chartmoe_tiny_llama_tiny_clip_align_json_e3_cpu']
    assert len(config_paths()) >= 12
    copied = copy_config('chartmoe_tiny_llama_tiny_clip_align_json_e3_cpu',
                         str(tmp_path))
    assert osp.basename(copied) == \
        'chartmoe_tiny_llama_tiny_clip_align_json_e3_cpu_copy.py'
    # the parent it inherits from comes along, so the copy loads
    assert (tmp_path / 'chartmoe_tiny_llama_tiny_clip_align_table_e3_cpu.py'
            ).is_file()
    from mmengine.config import Config
    assert Config.fromfile(copied).expert == 'json'
    assert main(['copy-cfg', 'no_such_config', str(tmp_path)]) == 1


def test_copied_and_edited_config_trains(workspace):
    """The README's customisation example: router, experts, LoRA rank."""
    copied = copy_config('chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft',
                         str(workspace / 'my_configs'), 'my_sft')
    text = open(copied).read()
    edits = {
        "moe_projector=dict(pretrained=moe_connector),":
        "moe_projector=dict(mode='upcycle', expert_projectors=[tiny_root + "
        "'general_projector'], num_experts=6, num_selected=1, "
        "router_type='cosine'),",
        'r=16,': 'r=8,',
        'lora_alpha=16,': 'lora_alpha=8,',
        'repeats = 12': 'repeats = 1',
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    open(copied, 'w').write(text)
    run_tool(['-m', 'xtuner.tools.train', copied], cwd=workspace)
    state, _ = projector_of(str(workspace / 'work_dirs' / 'my_sft'))
    assert 'projector.gate.proj.weight' in state  # cosine router
    assert 'projector.experts.5.0.weight' in state  # 6 experts
    assert int(state['projector.num_selected']) == 1
    lora_a = [v for k, v in state.items() if 'lora_A' in k]
    assert lora_a and all(v.shape[0] == 8 for v in lora_a)


def test_two_process_training_matches_single_process(workspace):
    single, double = 'work_dirs/ddp_1proc', 'work_dirs/ddp_2proc'
    run_tool(['-m', 'xtuner.tools.train', ALIGN, '--work-dir', single,
              '--cfg-options', 'train_dataloader.batch_size=8'],
             cwd=workspace)
    run_tool(['-m', 'torch.distributed.run', '--standalone',
              '--nproc_per_node', '2', '-m', 'xtuner.tools.train', ALIGN,
              '--launcher', 'pytorch', '--work-dir', double,
              '--cfg-options', 'train_dataloader.batch_size=4'],
             cwd=workspace)
    one, two = (projector_of(str(workspace / d)) for d in (single, double))
    assert one[1] == two[1]  # same number of optimizer steps
    for key, value in one[0].items():
        diff = (value - two[0][key]).norm() / value.norm()
        assert diff < 0.02, (key, diff.item())
    loss_one = training_losses(str(workspace / single))
    loss_two = training_losses(str(workspace / double))  # rank 0's half batch
    assert len(loss_one) == len(loss_two)
    assert abs(sum(loss_one) / len(loss_one) -
               sum(loss_two) / len(loss_two)) < 0.05


def test_killed_training_resumes_like_an_uninterrupted_run(workspace):
    options = ['--cfg-options', 'train_dataloader.dataset.times=40',
               'default_hooks.checkpoint.interval=10',
               'default_hooks.checkpoint.max_keep_ckpts=-1']
    straight, killed = 'work_dirs/straight', 'work_dirs/killed'
    run_tool(['-m', 'xtuner.tools.train', ALIGN, '--work-dir', straight,
              *options], cwd=workspace)
    proc = subprocess.Popen(
        [sys.executable, '-m', 'xtuner.tools.train', ALIGN, '--work-dir',
         killed, *options], cwd=workspace, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    marker = workspace / killed / 'iter_30.pth'
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and \
            time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workspace / killed / 'iter_120.pth').exists(), \
        'the run finished before it could be killed'
    resume_from = last_checkpoint(workspace / killed)
    run_tool(['-m', 'xtuner.tools.train', ALIGN, '--work-dir', killed,
              '--resume', resume_from, *options], cwd=workspace)
    (a, steps_a), (b, steps_b) = (projector_of(str(workspace / d))
                                  for d in (straight, killed))
    assert steps_a == steps_b == 120
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, atol=1e-5, rtol=1e-4)
    resumed = training_losses(str(workspace / killed))  # the resumed run's log
    assert training_losses(str(workspace / straight))[-len(resumed):] == \
        pytest.approx(resumed, abs=1e-4)
