"""The real recipe (InternLM2-chat-7B + CLIP-ViT-L/14-336 configs) proven on
real-architecture stand-ins: full-size parameter counts on the meta device,
InternLM2's code paths on a narrow stand-in, and at real width (1 LLM
layer, 2 CLIP layers) the real align and SFT configs trained through
DeepSpeed with their hooks on, converted, merged and answering."""
import glob
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from conftest import REPO, run_tool
from xtuner_chartmoe.engine import run_log
from xtuner_chartmoe.devkit.standin import (LLM_REPO, build_on_meta,
                                     build_standins, parameter_counts,
                                     standin_env)

REAL_DIR = osp.join(REPO, 'configs', 'chartmoe',
                    'internlm2_chat_7b_clip_vit_large_p14_336')
PREFIX = 'chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_'
LORA_TARGETS = ['w1', 'w2', 'w3', 'wo', 'wqkv']

# Published sizes: InternLM2-chat-7B has 7,737,708,544 parameters (its
# safetensors index), the CLIP-ViT-L/14-336 vision tower 303,507,456.
LLM, VISION = 7_737_708_544, 303_507_456
DENSE = 1024 * 4096 + 4096 + 4096 * 4096 + 4096  # XTuner's projector
MOE = 4 * DENSE + 4 * 1024  # 4 experts + linear router
LORA = 32 * 64 * ((4096 + 6144) + (4096 + 4096) + 3 * (4096 + 14336))
CLIP_MOE = VISION + 24 * (3 * (1024 * 4096 + 4096 + 4096 * 1024 + 1024) +
                          4 * 1024)
FULL_SIZE = {
    'align_table_e1_gpu8': (LLM + VISION + DENSE, DENSE),
    'align_json_e1_gpu8': (LLM + VISION + DENSE, DENSE),
    'align_code_e1_gpu8': (LLM + VISION + DENSE, DENSE),
    'lora_e1_gpu8_sft': (LLM + LORA + VISION + MOE, LORA + MOE),
    'lora_e1_gpu8_sft_hub': (LLM + LORA + VISION + MOE, LORA + MOE),
    'qlora_e1_gpu8_sft': (LLM + LORA + VISION + MOE, LORA + MOE),
    'lora_e1_gpu8_knowledge': (LLM + LORA + VISION + MOE, LORA + MOE),
    'clipmoe_lora_e1_gpu8_sft': (LLM + LORA + CLIP_MOE + MOE,
                                 LORA + MOE + CLIP_MOE),
    'full_e1_gpu8_prefinetune': (LLM + VISION + DENSE, LLM + VISION + DENSE),
}


def real_config(stage):
    return osp.join(REAL_DIR, PREFIX + stage + '.py')


def test_every_real_config_is_counted():
    stages = {osp.basename(p)[len(PREFIX):-3]
              for p in glob.glob(osp.join(REAL_DIR, PREFIX + '*.py'))}
    assert stages == set(FULL_SIZE)


@pytest.mark.parametrize('stage', sorted(FULL_SIZE))
def test_full_size_parameters_and_trainable_set(stage):
    model = build_on_meta(Config.fromfile(real_config(stage)))
    counts = parameter_counts(model)
    assert (counts['total'], counts['trainable']) == FULL_SIZE[stage]
    assert counts['visual_encoder'] == (CLIP_MOE if 'clipmoe' in stage
                                        else VISION)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    lora_targets = sorted({n.split('.lora_')[0].split('.')[-1]
                           for n in trainable if '.lora_' in n})
    if stage.startswith('align'):
        assert all(n.startswith('projector.model.') for n in trainable)
    elif stage.endswith('prefinetune'):
        assert not lora_targets and len(trainable) == len(
            list(model.parameters()))
    else:  # SFT: the connector fully, LoRA on the projections, not the head
        assert lora_targets == LORA_TARGETS
        assert 'projector.gate.weight' in trainable
        assert sum(n.startswith('projector.experts.') for n in trainable) == 16
        assert not any('.output.' in n for n in trainable)
        assert all(n.startswith(('projector.', 'llm.')) or 'clipmoe' in stage
                   for n in trainable)


def test_readme_shows_the_full_size_table():
    from xtuner_chartmoe.devkit.standin import full_size_table
    table = full_size_table(sorted(glob.glob(osp.join(REAL_DIR, '*.py'))))
    with open(osp.join(REPO, 'README.md')) as f:
        assert table in f.read()


def test_qlora_configs_quantize_the_llm_and_train_lora_and_connector():
    for path in (real_config('qlora_e1_gpu8_sft'), osp.join(
            REPO, 'configs', 'chartmoe', 'tiny',
            'chartmoe_tiny_llama_tiny_clip_qlora_e12_gpu1_sft.py')):
        cfg = Config.fromfile(path)
        quant = cfg.model.llm.quantization_config
        assert quant.type.__name__ == 'BitsAndBytesConfig'
        assert (quant.load_in_4bit, quant.bnb_4bit_quant_type,
                quant.bnb_4bit_use_double_quant) == (True, 'nf4', True)
        assert quant.bnb_4bit_compute_dtype == torch.bfloat16
        assert cfg.model.llm.torch_dtype == torch.bfloat16
        assert 'llm_lora' in cfg.model and 'moe_projector' in cfg.model
        assert cfg.model.freeze_llm and cfg.model.freeze_visual_encoder
        assert osp.basename(path).replace('qlora', 'lora').startswith(
            cfg.model.cpu_config.rsplit('_', 2)[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU stop')
def test_qlora_without_cuda_stops_with_one_line(workspace):
    config = osp.join(REPO, 'configs', 'chartmoe', 'tiny',
                      'chartmoe_tiny_llama_tiny_clip_qlora_e12_gpu1_sft.py')
    result = run_tool(['-m', 'xtuner.tools.train', config], cwd=workspace,
                      check=False)
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines[-1] == (
        'error: QLoRA needs a CUDA GPU (bitsandbytes loads the LLM in 4-bit '
        'NF4 only on CUDA) and this machine has none; train '
        'chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft instead')
    assert 'Traceback' not in result.stderr
    assert not (workspace / 'work_dirs' /
                'chartmoe_tiny_llama_tiny_clip_qlora_e12_gpu1_sft' /
                'last_checkpoint').exists()


# -- InternLM2's code paths, on the narrow stand-in --------------------------
def narrow_llm(narrow_standins):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    llm = AutoModelForCausalLM.from_pretrained(narrow_standins['llm'],
                                               trust_remote_code=True,
                                               torch_dtype=torch.float32)
    return llm, AutoTokenizer.from_pretrained(narrow_standins['llm'],
                                              trust_remote_code=True)


def test_standin_tokenizer_carries_the_internlm2_chat_tokens(narrow_standins):
    _, tokenizer = narrow_llm(narrow_standins)
    assert len(tokenizer) == 92544
    ids = tokenizer.encode('<|im_start|>user\nHi<|im_end|>\n')
    assert ids[:2] == [1, 92543] and 92542 in ids  # <s>, then the chat token
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == 'user\nHi'


def test_internlm2_generates_from_embeddings(narrow_standins):
    """transformers 4.48 passes an empty cache; the remote code then drops
    inputs_embeds. With the fix, embeddings give the tokens ids give."""
    llm, tokenizer = narrow_llm(narrow_standins)
    prompts = [tokenizer.encode(q) for q in ('What is the highest value?',
                                             'Which year has the lowest cost?')]
    ids = torch.tensor([p[:min(map(len, prompts))] for p in prompts])
    mask = torch.ones_like(ids)
    from_ids = llm.generate(input_ids=ids, attention_mask=mask,
                            max_new_tokens=6, do_sample=False)
    from_embeds = llm.generate(
        inputs_embeds=llm.get_input_embeddings()(ids), attention_mask=mask,
        max_new_tokens=6, do_sample=False)
    assert torch.equal(from_embeds, from_ids[:, ids.shape[1]:])


def test_lora_without_target_modules_leaves_the_lm_head(narrow_standins):
    from peft import LoraConfig
    from transformers import CLIPVisionModel

    from xtuner_chartmoe.model import ChartMoEModel
    llm, _ = narrow_llm(narrow_standins)
    model = ChartMoEModel(
        llm=llm, visual_encoder=CLIPVisionModel.from_pretrained(
            narrow_standins['clip']),
        freeze_llm=True, freeze_visual_encoder=True,
        use_activation_checkpointing=False,
        llm_lora=LoraConfig(r=4, lora_alpha=4, task_type='CAUSAL_LM'))
    wrapped = sorted({n.split('.lora_A')[0].split('.')[-1]
                      for n, _ in model.named_parameters() if '.lora_A' in n})
    assert wrapped == LORA_TARGETS  # InternLM2's LM head `output` is not


# -- the real configs at real width ------------------------------------------
def standin_run(root, args, **kwargs):
    """A command in the stand-in folder and environment (stdout+stderr)."""
    result = subprocess.run(args, cwd=root, env=standin_env(root),
                            capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f'{args} failed ({result.returncode}):\n'
                             f'{result.stdout[-3000:]}\n{result.stderr[-6000:]}')
    return result.stdout + result.stderr


def train_real(root, stage, *extra):
    return standin_run(root, [
        sys.executable, osp.join(REPO, 'tools', 'standin.py'), 'train',
        str(root), real_config(stage), '--samples', '1', *extra])


def last_checkpoint(root, stage):
    return run_log.last_checkpoint(root / 'work_dirs' / (PREFIX + stage))


@pytest.fixture(scope='module')
def real_recipe(tmp_path_factory):
    """Stand-ins at real width (1 LLM layer, 2 CLIP layers); the real align
    (1 step) and SFT (2 steps) configs trained by DeepSpeed ZeRO-2 with
    their hooks; the connector built in between; pth_to_hf and merge."""
    root = tmp_path_factory.mktemp('real')
    build_standins(root, llm_layers=1, vision_layers=2, num_charts=4)
    out = {'root': root}
    out['align_log'] = train_real(root, 'align_table_e1_gpu8',
                                  '--max-iters', '1')
    align_dir = f'work_dirs/{PREFIX}align_table_e1_gpu8'
    standin_run(root, [
        sys.executable, osp.join(REPO, 'tools', 'build_moe_connector.py'),
        'diverse', 'work_dirs/chartmoe_internlm2_moe_connector',
        '--projectors',
        'general=pretrained/llava-internlm2-7b-pretrain/iter_2181.pth',
        f'table={align_dir}', f'json={align_dir}', f'code={align_dir}'])
    out['sft_log'] = train_real(root, 'lora_e1_gpu8_sft', '--max-iters', '2')
    standin_run(root, [
        sys.executable, '-m', 'xtuner.tools.model_converters.pth_to_hf',
        real_config('lora_e1_gpu8_sft'),
        last_checkpoint(root, 'lora_e1_gpu8_sft'), 'work_dirs/hf'])
    standin_run(root, [sys.executable,
                       osp.join(REPO, 'tools', 'merge_chartmoe.py'),
                       'work_dirs/hf', 'work_dirs/release'])
    return out


def logged_losses(log):
    return [float(v) for v in re.findall(r'Iter\(train\).*? loss: ([\d.]+)',
                                         log)]


def checkpoint_state(path):
    from xtuner.model.utils import guess_load_checkpoint
    return guess_load_checkpoint(path)


def test_real_align_trains_with_its_hooks(real_recipe):
    log = real_recipe['align_log']
    assert 'before_train in EvaluateChatHook' in log
    assert log.count('Sample output:') == 3  # before, last iteration, after
    assert 'Convert the chart into a data table.' in log
    losses = logged_losses(log)
    assert len(losses) == 1 and 10 < losses[0] < 14  # ln(92544) = 11.4
    path = last_checkpoint(real_recipe['root'], 'align_table_e1_gpu8')
    assert osp.isdir(path)  # a DeepSpeed checkpoint folder
    state = checkpoint_state(path)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        'projector.model.0.weight': (4096, 1024),
        'projector.model.0.bias': (4096, ),
        'projector.model.2.weight': (4096, 4096),
        'projector.model.2.bias': (4096, )}


def test_real_sft_trains_the_connector_and_lora(real_recipe):
    log = real_recipe['sft_log']
    assert log.count('Sample output:') == 3
    assert 'load_general' in log and 'router_entropy' in log
    assert len(logged_losses(log)) == 2
    state = checkpoint_state(last_checkpoint(real_recipe['root'],
                                             'lora_e1_gpu8_sft'))
    lora = {k.split('.lora_')[0].split('.')[-1] for k in state if '.lora_' in k}
    assert sorted(lora) == LORA_TARGETS
    assert state['projector.gate.weight'].shape == (4, 1024)
    assert state['projector.experts.3.2.weight'].shape == (4096, 4096)
    assert not any(k.startswith('visual_encoder.') for k in state)
    hf = real_recipe['root'] / 'work_dirs' / 'hf'
    adapter = json.loads((hf / 'llm_adapter' / 'adapter_config.json')
                         .read_text())
    assert sorted(adapter['target_modules']) == LORA_TARGETS
    assert adapter['base_model_name_or_path'] == LLM_REPO


def test_real_release_answers_through_chat_evaluation_and_demo(real_recipe):
    root = real_recipe['root']
    test = json.loads((root / 'data/ChartQA/test/test_human.json').read_text())
    image = f"data/ChartQA/test/png/{test[0]['imgname']}"
    out = standin_run(root, [
        sys.executable, osp.join(REPO, 'tools', 'chat.py'),
        'work_dirs/release', '--image', image, '--question', test[0]['query'],
        '--max-new-tokens', '4'])
    counts = out.split('top-1 expert per visual token: ')[1].splitlines()[0]
    assert sum(int(p.split('=')[1]) for p in counts.split(', ')) == 576
    code = ('import json, sys\n'
            'from xtuner_chartmoe.apps.demo import ask\n'
            'from xtuner_chartmoe.evaluation.benchmarks import '
            'get_benchmark\n'
            'from xtuner_chartmoe.evaluation.benchmarks.runner import run\n'
            'from xtuner_chartmoe.families.llava.chat import LLaVAChat\n'
            'chat = LLaVAChat.from_release("work_dirs/release")\n'
            'results, _ = run(get_benchmark("chartqa"), chat, sys.argv[1],\n'
            '    "work_dirs/eval", modes=["short"], max_new_tokens=4)\n'
            'answer, program, report, expert_map = ask(\n'
            '    chat, sys.argv[2], "What is the sum?", True, 8)\n'
            'print("RESULT", json.dumps({"results": results["scores"]'
            '["ours"]["short"],\n'
            '      "report": report, "map": expert_map}))\n')
    out = standin_run(root, [sys.executable, '-c', code,
                             'data/ChartQA/test/test_human.json', image])
    shown = json.loads(out.split('RESULT ', 1)[1].splitlines()[0])
    assert set(shown['results']) == {'Human', 'Averaged'}
    assert shown['report'].startswith(('ran in the sandbox',
                                       'failed in the sandbox'))
    assert osp.isfile(shown['map'])
