"""ChartMoE's own recipe (arXiv 2409.03277) on InternLM-XComposer2-VL-7B
(arXiv 2401.16420) at real width: full-size trainable sets on the meta
device; the real align and SFT configs trained for 2 steps each on the
stand-in of ``Coobiw/InternLM-XComposer2_Enhanced`` (1 LLM + 1 ViT layer,
every width real; 112-px images, i.e. 64 visual tokens, to fit a CPU) with
their hooks on, through DeepSpeed ZeRO-2 as they are written, the
connector built in
between (ChartMoE's ``mlp_moe.pth``), ``pth_to_hf`` of the DeepSpeed
checkpoint folder, the merge into the released layout, reloaded through
``AutoModel`` (its remote code) and through our loader, answering."""
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO, chartmoe_layout_logits

REAL = osp.join(REPO, 'configs', 'chartmoe', 'internlm_xcomposer2_vl_7b',
                'chartmoe_internlm_xcomposer2_vl_7b_{}.py')
ENHANCED = 'Coobiw/InternLM-XComposer2_Enhanced'
DENSE = 1024 * 4096 + 4096 + 4096 * 4096 + 4096  # IXC2's vision_proj
MOE = 4 * DENSE + 4 * 1024  # ChartMoE: 4 experts + gate
LORA = 32 * 64 * ((4096 + 6144) + (4096 + 4096) + 3 * (4096 + 14336))
STAGES = {'align_table_e1_gpu4': (DENSE, 0), 'align_json_e1_gpu4': (DENSE, 0),
          'align_code_e1_gpu4': (DENSE, 0), 'lora_e1_gpu4_sft': (MOE, LORA),
          'lora_e1_gpu4_knowledge': (MOE, LORA),
          'qlora_e1_gpu4_sft': (MOE, LORA)}
QUESTION = 'What is the highest value?'


@pytest.mark.parametrize('stage', sorted(STAGES))
def test_full_size_trainable_sets(stage):
    from xtuner_chartmoe.families.ixc2.standin import stage_counts
    counts = stage_counts(REAL.format(stage))
    vision_proj, lora = STAGES[stage]
    assert (DENSE, MOE, LORA) == (20_979_712, 83_922_944, 150_994_944)
    assert counts['vision_proj'] == vision_proj
    assert counts['lora'] == lora
    assert counts['trainable'] == vision_proj + lora


def cpu_options(config, data_file):
    """``--cfg-options`` that run a real IXC2 config on a CPU: fp32 (as
    the stand-in is stored), gloo,
    batch 1 without accumulation or workers, 2 records of ``data_file``,
    2 iterations logged, 112-px images, short sequences and replies."""
    from mmengine.config import Config
    hooks = [getattr(h['type'], '__name__', h['type'])
             for h in Config.fromfile(config).custom_hooks]
    chat_hook = hooks.index('IXC2EvaluateChatHook')
    return [
        'model.llm.torch_dtype=auto',  # the stand-in is stored in float32
        'model.use_activation_checkpointing=False',
        'model.max_length=160', 'env_cfg.dist_cfg.backend=gloo',
        'train_dataloader.batch_size=1', 'train_dataloader.num_workers=0',
        'train_dataloader.pin_memory=False',
        f'train_dataloader.dataset.data_mix=[({data_file},2)]',
        'train_dataloader.dataset.count_unit=1',
        'train_dataloader.dataset.image_size=112',
        'optim_wrapper.accumulative_counts=1', 'train_cfg.max_epochs=None',
        'train_cfg.max_iters=2', 'default_hooks.logger.interval=1',
        f'custom_hooks.{chat_hook}.max_new_tokens=4']


def write_data(root):
    """Two ChartMoE-Data records per file the configs read, and the image
    their evaluation hooks ask about."""
    from PIL import Image, ImageDraw
    image = Image.new('RGB', (300, 200), 'white')
    ImageDraw.Draw(image).rectangle((40, 60, 120, 190), fill='steelblue')
    for folder, name in (('data/ChartMoE-Data', 'chart.png'),
                         ('data/ChartQA/train/png', '00006834003065.png')):
        (root / folder).mkdir(parents=True, exist_ok=True)
        image.save(root / folder / name)
    for name, answer in (('chart2table.json', '| x | y |\n| a | 5 |'),
                         ('chartqa.json', '5'), ('chartgemma.json', '5')):
        records = [{'id': f'{name}{i}', 'image': ['chart.png'],
                    'conversations': [
                        {'from': 'user', 'value': '<ImageHere>' + QUESTION},
                        {'from': 'assistant', 'value': answer}]}
                   for i in range(2)]
        (root / 'data' / 'ChartMoE-Data' / name).write_text(
            json.dumps(records))


def run(root, *args):
    from xtuner_chartmoe.devkit.standin import standin_env
    result = subprocess.run(
        [sys.executable, '-m', 'xtuner_chartmoe.commands.cli', *args],
        cwd=root, env=standin_env(str(root)), capture_output=True, text=True)
    assert result.returncode == 0, (f'{args[:2]}: {result.stdout[-2000:]}\n'
                                    f'{result.stderr[-4000:]}')
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def recipe(tmp_path_factory):
    import huggingface_hub

    from xtuner_chartmoe.commands.build_moe_connector import main as build_moe
    from xtuner_chartmoe.families.ixc2.standin import build_ixc2_standins
    root = tmp_path_factory.mktemp('ixc2_recipe')
    paths = build_ixc2_standins(root, llm_layers=1, vision_layers=1,
                                repos=(ENHANCED,), dtype=torch.float32,
                                img_size=112)
    write_data(root)
    align, sft = REAL.format('align_table_e1_gpu4'), REAL.format(
        'lora_e1_gpu4_sft')
    out = {'root': root, 'base': paths[ENHANCED]}
    out['align_log'] = run(root, 'train', align, '--deepspeed',
                           'deepspeed_zero2', '--cfg-options',
                           *cpu_options(align, 'chart2table.json'))
    align_dir = 'work_dirs/chartmoe_internlm_xcomposer2_vl_7b_align_table_' \
        'e1_gpu4'
    with pytest.MonkeyPatch.context() as patch:  # in-process: the hub id
        patch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE',
                      paths['hf_cache'])
        patch.chdir(root)
        build_moe(['diverse', 'work_dirs/moe', '--projectors',
                   f'general={ENHANCED}', *(f'{r}={align_dir}' for r in (
                       'table', 'json', 'code')),
                   '--mlp-moe', 'work_dirs/mlp_moe.pth'])
    out['sft_log'] = run(root, 'train', sft, '--deepspeed', 'deepspeed_zero2',
                         '--cfg-options', *cpu_options(sft, 'chartqa.json'),
                         'model.moe_projector.pretrained=work_dirs/'
                         'mlp_moe.pth')
    checkpoint = root / 'work_dirs' / \
        'chartmoe_internlm_xcomposer2_vl_7b_lora_e1_gpu4_sft' / 'iter_2.pth'
    out['checkpoint'] = checkpoint
    run(root, 'convert', 'pth_to_hf', sft, str(checkpoint), 'work_dirs/hf',
        '--cfg-options', 'model.moe_projector.pretrained=work_dirs/'
        'mlp_moe.pth')
    run(root, 'merge', 'work_dirs/hf', 'work_dirs/release')
    out['release'] = root / 'work_dirs' / 'release'
    return out


def test_real_align_trains_vision_proj_with_its_hook(recipe):
    log = recipe['align_log']
    assert log.count('Sample output') == 2  # before and after training
    losses = re.findall(r'Iter\(train\) \[\d/2\].*? loss: ([\d.]+)', log)
    assert len(losses) == 2 and 10 < float(losses[0]) < 13  # ln(92544)
    assert 0 < float(losses[1]) < 13


def test_real_sft_checkpoint_is_a_deepspeed_folder(recipe):
    from xtuner.model.utils import guess_load_checkpoint
    assert osp.isdir(recipe['checkpoint'])
    state = guess_load_checkpoint(str(recipe['checkpoint']))
    lora = sum(v.numel() for k, v in state.items() if '.lora_' in k)
    moe = sum(v.numel() for k, v in state.items()
              if 'vision_proj' in k and not k.endswith('num_selected'))
    assert (moe, lora) == (MOE, LORA // 32)  # one layer here
    assert recipe['sft_log'].count('Sample output') == 2
    assert 'router_entropy' in recipe['sft_log']


def test_real_release_reloads_and_answers(recipe):
    from transformers import AutoModelForCausalLM

    from xtuner_chartmoe.families import load_chat_model
    from xtuner_chartmoe.families.ixc2 import load_ixc2
    release = str(recipe['release'])
    config = json.loads((recipe['release'] / 'config.json').read_text())
    assert (config['hidden_size'], config['num_experts'],
            config['num_selected'], config['torch_dtype']) == (
                4096, 4, 2, 'bfloat16')
    remote = AutoModelForCausalLM.from_pretrained(
        release, trust_remote_code=True, torch_dtype=torch.bfloat16)
    ours = load_ixc2(release, tokenizer=False).model
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 112, 112)
    ids = torch.tensor([[1, 92543, 300, 301, 92542]])
    assert torch.equal(chartmoe_layout_logits(remote, pixels, ids),
                       chartmoe_layout_logits(ours, pixels, ids))
    del remote, ours
    chat = load_chat_model(release, dtype='bfloat16')
    image = recipe['root'] / 'data' / 'ChartMoE-Data' / 'chart.png'
    replies = chat.answer([image], [QUESTION], max_new_tokens=4)
    assert len(replies) == 1 and isinstance(replies[0], str)
