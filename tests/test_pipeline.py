"""Every tiny stage config through XTuner's own tools, end to end."""
import json
import os
import os.path as osp

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, run_tool
from xtuner_chartmoe.engine.run_log import last_checkpoint, logged_scalars

CFG = osp.join(REPO, 'configs', 'chartmoe', 'tiny')
ALIGN = 'chartmoe_tiny_llama_tiny_clip_align_{}_e3_cpu'
SFT = 'chartmoe_tiny_llama_tiny_clip_lora_e12_cpu_sft'


def train(workspace, name, *options):
    run_tool(['-m', 'xtuner.tools.train', osp.join(CFG, name + '.py')] +
             (['--cfg-options', *options] if options else []), cwd=workspace)
    work_dir = workspace / 'work_dirs' / name
    checkpoint = last_checkpoint(work_dir)
    return [row['loss'] for row in logged_scalars(work_dir)], checkpoint


def mean(values):
    return sum(values) / len(values)


@pytest.fixture(scope='module')
def pipeline(workspace):
    out = {'align': {}}
    for expert in ('table', 'json', 'code'):
        out['align'][expert] = train(workspace, ALIGN.format(expert))
    run_tool([
        osp.join(REPO, 'tools', 'build_moe_connector.py'), 'diverse',
        'work_dirs/tiny_moe_connector', '--projectors',
        'work_dirs/tiny/general_projector',
        *[f'work_dirs/{ALIGN.format(e)}' for e in ('table', 'json', 'code')]
    ], cwd=workspace)
    out['sft'] = train(workspace, SFT)
    run_tool(['-m', 'xtuner.tools.model_converters.pth_to_hf',
              osp.join(CFG, SFT + '.py'), out['sft'][1], 'work_dirs/hf'],
             cwd=workspace)
    run_tool([osp.join(REPO, 'tools', 'merge_chartmoe.py'), 'work_dirs/hf',
              'work_dirs/release'], cwd=workspace)
    return out


@pytest.mark.parametrize('expert', ['table', 'json', 'code'])
def test_align_stage_trains_and_loss_decreases(pipeline, expert):
    losses, checkpoint = pipeline['align'][expert]
    assert len(losses) >= 6
    assert mean(losses[-3:]) < mean(losses[:3]) - 0.05, losses
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    keys = set(state['state_dict'])
    assert keys == {f'projector.model.{i}.{p}' for i in (0, 2)
                    for p in ('weight', 'bias')}  # only the projector trains


def test_moe_connector_holds_general_and_aligned_experts(pipeline, workspace):
    moe = load_file(workspace / 'work_dirs/tiny_moe_connector/model.safetensors')
    general = load_file(
        workspace / 'work_dirs/tiny/general_projector/model.safetensors')
    assert torch.equal(moe['experts.0.0.weight'], general['model.0.weight'])
    for i, expert in enumerate(('table', 'json', 'code'), start=1):
        aligned = torch.load(pipeline['align'][expert][1], map_location='cpu',
                             weights_only=False)['state_dict']
        assert torch.equal(moe[f'experts.{i}.2.weight'],
                           aligned['projector.model.2.weight'])
        assert not torch.equal(moe[f'experts.{i}.2.weight'],
                               general['model.2.weight'])


def test_sft_trains_moe_and_lora_and_loss_decreases(pipeline):
    losses, checkpoint = pipeline['sft']
    assert mean(losses[-3:]) < mean(losses[:3]) - 0.1, losses
    keys = set(torch.load(checkpoint, map_location='cpu',
                          weights_only=False)['state_dict'])
    assert 'projector.gate.weight' in keys
    assert any('lora_A' in k for k in keys)


def test_converted_and_merged_model_reloads_and_generates(pipeline, workspace):
    from transformers import AutoModel
    from xtuner_chartmoe.families.llava.chat import LLaVAChat
    hf = workspace / 'work_dirs' / 'hf'
    assert (hf / 'llm_adapter' / 'adapter_config.json').is_file()
    trained = torch.load(pipeline['sft'][1], map_location='cpu',
                         weights_only=False)['state_dict']
    projector = AutoModel.from_pretrained(hf / 'projector',
                                          trust_remote_code=True)
    assert torch.equal(projector.gate.weight, trained['projector.gate.weight'])

    release = workspace / 'work_dirs' / 'release'
    chat = LLaVAChat.from_release(str(release))
    base = load_file(workspace / 'work_dirs/tiny/llm/model.safetensors')
    merged_q = chat.llm.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(merged_q.float(),
                              base['model.layers.0.self_attn.q_proj.weight'],
                              atol=1e-4)  # LoRA folded in
    data = workspace / 'work_dirs' / 'tiny' / 'data'
    test = json.loads((data / 'test' / 'test_human.json').read_text())[:2]
    replies, routing = chat.answer([str(data / t['imgname']) for t in test],
                                   [t['query'] for t in test],
                                   max_new_tokens=8, return_routing=True)
    assert routing.experts.shape == (2, 64, 2)
    # batched generation equals one-by-one generation (left padding is right)
    for i in (0, 1):
        assert chat.answer([str(data / test[i]['imgname'])],
                           [test[i]['query']], max_new_tokens=8) == [
                               replies[i]]


def test_chat_tool_prints_answer_and_expert_use(pipeline, workspace):
    data = workspace / 'work_dirs' / 'tiny' / 'data'
    result = run_tool([osp.join(REPO, 'tools', 'chat.py'), 'work_dirs/release',
                       '--image', str(data / 'charts' / '000015.png'),
                       '--question', 'What is the highest value?',
                       '--max-new-tokens', '8'], cwd=workspace)
    assert 'answer:' in result.stdout
    counts = result.stdout.split('top-1 expert per visual token: ')[1]
    assert sum(int(part.split('=')[1]) for part in counts.split(', ')) == 64


def test_merge_tool_rejects_a_folder_that_is_not_a_conversion(workspace):
    result = run_tool([osp.join(REPO, 'tools', 'merge_chartmoe.py'),
                       'work_dirs/tiny', 'work_dirs/x'], cwd=workspace,
                      check=False)
    assert result.returncode != 0
    assert 'chartmoe_hf.json missing' in result.stderr


def test_sft_log_has_routing_statistics(pipeline, workspace):
    rows = logged_scalars(workspace / 'work_dirs' / SFT)
    names = ('general', 'table', 'json', 'code')
    for row in rows:
        assert sum(row[f'load_{n}'] for n in names) == pytest.approx(1.0,
                                                                    abs=1e-4)
        assert 0 <= row['router_entropy'] <= 1.3863  # ln 4


def test_eval_and_routing_analysis_on_the_release(pipeline, workspace):
    out = workspace / 'work_dirs' / 'eval'
    run_tool([osp.join(REPO, 'tools', 'eval_chartqa.py'), '--release',
              'work_dirs/release', '--data-root', 'work_dirs/tiny/data/test',
              '--image-folder', 'work_dirs/tiny/data', '--out', str(out),
              '--max-new-tokens', '16', '--force-expert', '1'], cwd=workspace)
    results = json.loads((out / 'results.json').read_text())
    assert set(results) == {'short', 'pot'}  # eval-chartqa's own layout
    assert set(results['pot']) == {'Human', 'Augmented', 'Averaged'}
    human = json.loads((workspace / 'work_dirs/tiny/data/test/'
                        'test_human.json').read_text())
    answers = (out / 'answers_human_pot.jsonl').read_text().splitlines()
    assert len(answers) == len(human)

    run_tool([osp.join(REPO, 'tools', 'analyze_routing.py'), '--release',
              'work_dirs/release', '--data',
              'work_dirs/tiny/data/test/test_human.json', '--image-folder',
              'work_dirs/tiny/data', '--out', 'work_dirs/routing'],
             cwd=workspace)
    stats = json.loads((workspace / 'work_dirs/routing/routing_stats.json'
                        ).read_text())
    images = {h['imgname'] for h in human}
    assert stats['tokens'] == 64 * len(images)
    assert sum(stats['top1_counts']) == stats['tokens']
    assert sum(stats['load']) == pytest.approx(1.0)
    assert all(sum(c) == 64 for c in stats['per_image_top1_counts'].values())
    assert (workspace / 'work_dirs/routing/expert_distribution.png').is_file()
    assert len(list((workspace / 'work_dirs/routing').glob(
        'expert_map_*.png'))) == min(4, len(images))


def test_clip_moe_sft_trains_converts_and_merges(pipeline, workspace):
    from xtuner_chartmoe.families.llava.chat import LLaVAChat
    from xtuner_chartmoe.model import CLIPMoEMLP, RoutingRecorder
    name = 'chartmoe_tiny_llama_tiny_clip_clipmoe_lora_e12_cpu_sft'
    losses, checkpoint = train(workspace, name,
                               'train_dataloader.dataset.times=4')
    assert mean(losses[-3:]) < mean(losses[:3]) - 0.1, losses
    rows = logged_scalars(workspace / 'work_dirs' / name)
    assert all(r['balance_loss'] >= 0.1 * 0.99 and r['z_loss'] > 0
               for r in rows)  # logged separately; balance loss >= 1 x coef
    run_tool(['-m', 'xtuner.tools.model_converters.pth_to_hf',
              osp.join(CFG, name + '.py'), checkpoint, 'work_dirs/hf_clipmoe'],
             cwd=workspace)
    config = json.loads((workspace / 'work_dirs/hf_clipmoe/visual_encoder/'
                         'config.json').read_text())
    assert config['chartmoe_mlp_moe'] == {'num_experts': 4, 'num_selected': 2}
    run_tool([osp.join(REPO, 'tools', 'merge_chartmoe.py'),
              'work_dirs/hf_clipmoe', 'work_dirs/release_clipmoe'],
             cwd=workspace)
    chat = LLaVAChat.from_release(
        str(workspace / 'work_dirs' / 'release_clipmoe'))
    mlp = chat.visual_encoder.vision_model.encoder.layers[2].mlp
    assert isinstance(mlp, CLIPMoEMLP)
    trained = torch.load(checkpoint, map_location='cpu',
                         weights_only=False)['state_dict']
    assert torch.equal(mlp.gate.weight, trained[
        'visual_encoder.vision_model.encoder.layers.2.mlp.gate.weight'])
    data = workspace / 'work_dirs' / 'tiny' / 'data'
    recorder = RoutingRecorder({'layer2': mlp})
    chat.answer([str(data / 'charts' / '000015.png')], ['Q?'],
                max_new_tokens=4)
    routing = recorder.routings['layer2']  # the MoE MLPs routed the chart's
    assert routing.experts.shape == (65, 2)  # 65 tokens
    # the transformers-native release carries the CLIP MoE too
    run_tool(['-m', 'xtuner.tools.model_converters.pth_to_hf',
              osp.join(CFG, name + '.py'), checkpoint,
              'work_dirs/hf_native_clipmoe', '--save-format', 'huggingface'],
             cwd=workspace)
    model, _, _, pairs = hf_native_and_release_answers(
        workspace, str(workspace / 'work_dirs' / 'hf_native_clipmoe'),
        workspace / 'work_dirs' / 'release_clipmoe')
    assert isinstance(model.vision_tower.vision_model.encoder.layers[2].mlp,
                      torch.nn.Module)
    assert type(model.vision_tower.vision_model.encoder.layers[2].mlp
                ).__name__ == 'CLIPMoEMLP'
    assert torch.equal(
        model.vision_tower.vision_model.encoder.layers[2].mlp.gate.weight,
        mlp.gate.weight)
    for theirs, ours in pairs:
        assert theirs == ours


def test_xtuner_chat_answers_from_our_pth_to_hf_output_in_fp16(pipeline,
                                                              workspace):
    """XTuner's own chat with ``--llava`` on our ``pth_to_hf`` output at its
    default ``--torch-dtype fp16``: the connector loads in fp16 like the
    CLIP features it receives, and the chat answers."""
    tiny = workspace / 'work_dirs' / 'tiny'
    result = run_tool(
        ['-m', 'xtuner.tools.chat', str(tiny / 'llm'), '--visual-encoder',
         str(tiny / 'clip'), '--llava', 'work_dirs/hf', '--prompt-template',
         'internlm2_chat', '--image', str(tiny / 'data/charts/000015.png'),
         '--max-new-tokens', '8', '--no-streamer'],
        cwd=workspace, stdin='Which category is highest?\n\nEXIT\n\n')
    assert 'Load projector from work_dirs/hf' in result.stdout
    turns = result.stdout.split('>>> ')
    assert len(turns) == 3 and turns[2].strip() == 'Log: Exit!', result.stdout
    assert turns[1].strip(), result.stdout  # the answer to the question


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_release_runs_in_half_precision(pipeline, workspace, dtype):
    """The release in bf16 / fp16 on CPU: every float parameter cast, the
    router in fp32, the same top-1 experts as fp32 for most tokens."""
    from xtuner_chartmoe.families.llava.chat import LLaVAChat
    release = str(workspace / 'work_dirs' / 'release')
    image = str(workspace / 'work_dirs/tiny/data/charts/000015.png')
    full = LLaVAChat.from_release(release)
    half = LLaVAChat.from_release(release, dtype=dtype)
    for module in (half.llm, half.visual_encoder, half.projector):
        assert {p.dtype for p in module.parameters()} == {dtype}
    answers, routed = half.answer([image], ['Which category is highest?'], 8,
                                  return_routing=True)
    answer = answers[0]
    assert isinstance(answer, str) and answer.strip()
    assert routed.logits.dtype == torch.float32
    _, full_routing = full.answer([image], ['Which category is highest?'], 8,
                                  return_routing=True)
    same = (routed.experts[..., 0] ==
            full_routing.experts[..., 0]).float().mean()
    assert same >= 0.8


def test_prefinetune_trains_the_whole_model(pipeline, workspace):
    name = 'chartmoe_tiny_llama_tiny_clip_full_e3_cpu_prefinetune'
    losses, checkpoint = train(workspace, name)
    assert mean(losses[-3:]) < mean(losses[:3]) - 0.1, losses
    keys = set(torch.load(checkpoint, map_location='cpu',
                          weights_only=False)['state_dict'])
    assert any(k.startswith('llm.model.layers.') for k in keys)
    assert any(k.startswith('visual_encoder.vision_model.') for k in keys)
    assert 'projector.model.0.weight' in keys
    # the MoE stages upcycle from it: its projector seeds the experts
    from xtuner_chartmoe.model import build_moe_projector
    moe = build_moe_projector('upcycle', [str(workspace / 'work_dirs' / name)])
    trained = torch.load(checkpoint, map_location='cpu',
                         weights_only=False)['state_dict']
    assert torch.equal(moe.experts[3][0].weight,
                       trained['projector.model.0.weight'])


def test_demo_turns(pipeline, workspace):
    from xtuner_chartmoe.apps.demo import ask
    from xtuner_chartmoe.families.llava.chat import LLaVAChat
    from xtuner_chartmoe.prompts import PROMPTS
    chat = LLaVAChat.from_release(str(workspace / 'work_dirs' / 'release'))
    image = str(workspace / 'work_dirs/tiny/data/charts/000015.png')
    assert ask(chat, None, 'Q?', False)[0] == \
        'Please upload a chart image first.'
    answer, program, report, expert_map = ask(chat, image, 'Highest?', False,
                                              32)
    assert answer == chat.answer(
        [image], [PROMPTS['short'] + 'Highest?'], 32)[0]
    assert program == '' and report == ''
    assert osp.isfile(expert_map)
    # the PoT turn runs the reply's program in the sandbox
    replies = iter(['Here:\n```python\nprint(6 * 7)\n```',
                    '```python\nimport os\nos.fork()\n```'])
    chat.answer = lambda images, questions, max_new_tokens, return_routing: (
        [next(replies)], None)
    assert ask(chat, image, 'Sum?', True, 32)[:3] == (
        '42', 'print(6 * 7)\n', "ran in the sandbox: printed '42'")
    answer, program, report, _ = ask(chat, image, 'Sum?', True, 32)
    assert answer == '' and program == 'import os\nos.fork()\n'
    assert report == ('failed in the sandbox: PermissionError: [Errno 1] '
                      'Operation not permitted')


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _alnum(text):
    return ''.join(c for c in text.lower() if c.isalnum())


def test_demo_in_headless_chromium(pipeline, workspace, tmp_path):
    """Upload a chart in the web demo, ask, read the answer off a
    screenshot (tesseract), then ask again with program of thought."""
    import shutil
    import signal
    import subprocess
    import sys
    import time
    import urllib.request
    for tool in ('chromium', 'chromedriver', 'tesseract'):
        assert shutil.which(tool), f'{tool} missing: .ci/run installs it'
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from xtuner_chartmoe.commands.chat_demo import DEFAULT_EXAMPLES
    from xtuner_chartmoe.apps.demo import ask, load_examples
    from xtuner_chartmoe.families.llava.chat import LLaVAChat
    release = str(workspace / 'work_dirs' / 'release')
    image = str(workspace / 'work_dirs/tiny/data/charts/000015.png')
    question = 'Which category has the highest value?'
    expected = ask(LLaVAChat.from_release(release), image, question, False)

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, osp.join(REPO, 'tools', 'chat_demo.py'), release,
         '--port', str(port)], cwd=workspace, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which('chromium')
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu',
                '--disable-dev-shm-usage', '--disable-background-networking',
                '--disable-component-update', '--disable-sync',
                '--no-first-run', '--window-size=1280,1000',
                f'--user-data-dir={tmp_path / "profile"}'):
        options.add_argument(arg)
    driver = None
    try:
        url = f'http://127.0.0.1:{port}/'
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert server.poll() is None, 'the demo server exited'
                assert time.time() < deadline, 'the demo did not come up'
                time.sleep(0.5)
        driver = webdriver.Chrome(
            service=Service(shutil.which('chromedriver')), options=options)
        wait = WebDriverWait(driver, 120)
        driver.get(url)
        wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, '#chart input[type=file]')).send_keys(image)
        driver.find_element(By.CSS_SELECTOR,
                            '#question textarea').send_keys(question)
        time.sleep(1)
        driver.find_element(By.CSS_SELECTOR, '#ask').click()
        shown = wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, '#answer textarea').get_attribute('value'))
        assert shown == expected[0]
        time.sleep(1)
        screenshot = str(tmp_path / 'demo.png')
        driver.save_screenshot(screenshot)
        ocr = subprocess.run(['tesseract', screenshot, '-'],
                             capture_output=True, text=True).stdout
        assert 'chartmoechat' in _alnum(ocr) and 'answer' in _alnum(ocr)
        assert _alnum(expected[0]) in _alnum(ocr), (expected[0], ocr)
        # the expert map was drawn
        assert driver.find_element(By.CSS_SELECTOR, '#expert_map img')

        driver.find_element(By.CSS_SELECTOR, '#pot input').click()
        driver.find_element(By.CSS_SELECTOR, '#ask').click()
        report = wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, '#sandbox textarea').get_attribute('value'))
        assert report.startswith(('ran in the sandbox',
                                  'failed in the sandbox'))
        assert driver.find_element(By.CSS_SELECTOR, '#program').text.strip()

        # a first visitor clicks an example chart (the tiny test split's)
        examples = load_examples(str(workspace / DEFAULT_EXAMPLES))
        charts = {e['imgname'] for e in json.loads(
            (workspace / DEFAULT_EXAMPLES).read_text())}
        assert len(examples) == min(3, len(charts)) >= 2
        driver.find_element(By.CSS_SELECTOR, '#pot input').click()
        rows = driver.find_elements(By.CSS_SELECTOR, '#examples tbody tr')
        assert len(rows) == len(examples)
        rows[1].click()
        wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, '#question textarea').get_attribute('value')
            == examples[1][1])
        driver.find_element(By.CSS_SELECTOR, '#ask').click()
        expected = ask(LLaVAChat.from_release(release), *examples[1], False)
        wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, '#answer textarea').get_attribute('value')
            == expected[0])
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_eval_from_training_checkpoint_matches_the_release(pipeline,
                                                           workspace):
    """--config/--checkpoint (LoRA unmerged) answers as the merged release
    does (greedy, fp32)."""
    out = {}
    for name, model_args in (
            ('ckpt', ['--config', osp.join(CFG, SFT + '.py'), '--checkpoint',
                      pipeline['sft'][1]]),
            ('release', ['--release', 'work_dirs/release'])):
        run_tool([osp.join(REPO, 'tools', 'eval_chartqa.py'), *model_args,
                  '--data-root', 'work_dirs/tiny/data/test', '--image-folder',
                  'work_dirs/tiny/data', '--splits', 'human', '--modes',
                  'short', '--out', f'work_dirs/eval_{name}',
                  '--max-new-tokens', '8'], cwd=workspace)
        out[name] = [json.loads(line)['reply'] for line in (
            workspace / f'work_dirs/eval_{name}/answers_human_short.jsonl'
        ).read_text().splitlines()]
    assert len(out['ckpt']) == len(out['release']) > 0
    same = sum(a == b for a, b in zip(out['ckpt'], out['release']))
    assert same >= 0.8 * len(out['ckpt']), out  # merge rounds to fp16


def run_lmms(workspace, model_args, tasks, out, limit=None):
    """lmms-eval's own CLI in the data root (the task reads test/...);
    returns its samples per task. lmms-eval exits 0 even on failure, so
    the samples files are what tell."""
    from xtuner_chartmoe.apps.lmms import TASKS_DIR
    env = {k: v for k, v in os.environ.items() if k not in (
        'RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    env.update(HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')  # one process
    import subprocess
    import sys
    result = subprocess.run(
        [sys.executable, '-m', 'lmms_eval', '--model', 'chartmoe',
         '--model_args', model_args, '--batch_size', '4', '--tasks', tasks,
         '--include_path', TASKS_DIR, '--log_samples', '--output_path',
         str(out), *(['--limit', str(limit)] if limit else [])],
        cwd=workspace / 'work_dirs' / 'tiny' / 'data', env=env,
        capture_output=True, text=True)
    samples = {}
    for path in out.glob('*/*_samples_*.jsonl'):
        task = path.stem.split('_samples_')[1]
        samples[task] = [json.loads(line) for line in
                         path.read_text().splitlines()]
    assert samples, result.stdout[-3000:] + result.stderr[-3000:]
    return samples


def documented_difference(prediction, label):
    """Where lmms-eval's ChartQA metric and ours disagree by design (README):
    it reads '1,234', '$12' and '45%' (as 0.45) differently, compares 0
    as text and does not strip."""
    return (not prediction or any(c in prediction + label for c in ',%$')
            or prediction != prediction.strip() or label.strip() in ('0',
                                                                     '0.0'))


def test_lmms_eval_cli_runs_the_release_on_local_chartqa(pipeline, workspace):
    """lmms-eval's CLI with `--model chartmoe` (entry point) and the shipped
    chartqa_local task gives the replies and, for these labels, the scores
    of our own evaluator; each logged sample carries its routing."""
    from xtuner_chartmoe.evaluation.benchmarks import get_benchmark
    from xtuner_chartmoe.evaluation.benchmarks.runner import run
    from xtuner_chartmoe.families.llava.chat import LLaVAChat
    release = str(workspace / 'work_dirs' / 'release')
    samples = run_lmms(workspace, f'pretrained={release}', 'chartqa_local',
                       workspace / 'work_dirs' / 'lmms')
    assert set(samples) == {'chartqa_local_human', 'chartqa_local_augmented'}
    data = workspace / 'work_dirs' / 'tiny' / 'data'
    out = workspace / 'work_dirs' / 'eval_for_lmms'
    run(get_benchmark('chartqa'), LLaVAChat.from_release(release),
        [str(data / 'test' / f'test_{s}.json')
         for s in ('human', 'augmented')], str(out), image_folder=str(data),
        modes=['short'], max_new_tokens=16)
    for split in ('human', 'augmented'):
        ours = [json.loads(line) for line in (
            out / f'answers_{split}_short.jsonl').read_text().splitlines()]
        theirs = sorted(samples[f'chartqa_local_{split}'],
                        key=lambda s: s['doc_id'])
        assert len(ours) == len(theirs) > 0
        for mine, sample in zip(ours, theirs):
            assert sample['filtered_resps'].strip() == mine['answer']
            assert sample['target'] == mine['label']
            if not documented_difference(mine['answer'], mine['label']):
                assert sample['relaxed_overall'] == float(
                    mine['correct']['0.05'])
            routing = sample['routing']
            assert sum(routing['top1_counts'].values()) == 64
            assert sum(routing['expert_load'].values()) == pytest.approx(1)
            assert list(routing['expert_load']) == [
                'general', 'table', 'json', 'code']


def test_lmms_eval_from_a_training_checkpoint(pipeline, workspace):
    checkpoint = pipeline['sft'][1]
    samples = run_lmms(
        workspace, f'pretrained={checkpoint},config={osp.join(CFG, SFT)}.py,'
        f'root={workspace}',
        'chartqa_local_human', workspace / 'work_dirs' / 'lmms_ckpt', limit=3)
    rows = sorted(samples['chartqa_local_human'], key=lambda r: r['doc_id'])
    assert len(rows) == 3
    # the same replies as our own inference from that checkpoint
    import contextlib

    from PIL import Image

    from xtuner_chartmoe.families.llava.chat import LLaVAChat
    from xtuner_chartmoe.prompts import PROMPTS
    with contextlib.chdir(workspace):
        chat = LLaVAChat.from_checkpoint(osp.join(CFG, SFT + '.py'),
                                            checkpoint)
    data = workspace / 'work_dirs' / 'tiny' / 'data'
    docs = json.loads((data / 'test' / 'test_human.json').read_text())[:3]
    replies = chat.answer(
        [Image.open(data / d['imgname']).convert('RGB') for d in docs],
        [PROMPTS['short'] + d['query'] for d in docs], 16)
    assert [r['filtered_resps'].strip() for r in rows] == replies
    assert all(r['routing']['router_entropy'] > 0 for r in rows)


def hf_native_and_release_answers(workspace, hf_dir, release, dtype=None):
    """Greedy replies of the transformers-native release (plain
    transformers: AutoModelForImageTextToText, AutoProcessor, the chat
    template) and of our own inference from the XTuner-format release."""
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from xtuner_chartmoe.families.llava.chat import LLaVAChat
    from xtuner_chartmoe.prompts import PROMPTS
    kwargs = {'torch_dtype': dtype} if dtype else {}
    model = AutoModelForImageTextToText.from_pretrained(
        hf_dir, trust_remote_code=True, **kwargs).eval()
    processor = AutoProcessor.from_pretrained(hf_dir, trust_remote_code=True)
    chat = LLaVAChat.from_release(str(release))
    data = workspace / 'work_dirs' / 'tiny' / 'data'
    tests = json.loads((data / 'test' / 'test_human.json').read_text())[:3]
    pairs = []
    for entry, mode in zip(tests, ('short', 'pot', 'pot')):
        image = Image.open(data / entry['imgname'])
        question = PROMPTS[mode] + entry['query']
        messages = [{'role': 'user', 'content': [
            {'type': 'image'}, {'type': 'text', 'text': question}]}]
        prompt = processor.apply_chat_template(messages,
                                               add_generation_prompt=True)
        inputs = processor(images=image, text=prompt)
        output = model.generate(**inputs, max_new_tokens=24)
        theirs = processor.batch_decode(
            output[:, inputs['input_ids'].shape[1]:],
            skip_special_tokens=True)[0].strip()
        pairs.append((theirs, chat.answer([image], [question], 24)[0]))
    return model, processor, inputs, pairs


def test_transformers_native_release(pipeline, workspace):
    """`pth_to_hf --save-format huggingface`: plain transformers loads it
    and answers with our own inference's tokens; the routing can be read;
    it loads in bf16 and fp16 with every float parameter cast."""
    hf_dir = workspace / 'work_dirs' / 'hf_native'
    run_tool(['-m', 'xtuner.tools.model_converters.pth_to_hf',
              osp.join(CFG, SFT + '.py'), pipeline['sft'][1], str(hf_dir),
              '--save-format', 'huggingface'], cwd=workspace)
    config = json.loads((hf_dir / 'config.json').read_text())
    assert config['auto_map']['AutoModelForImageTextToText'] == \
        'modeling_chartmoe.ChartMoEForConditionalGeneration'
    assert (hf_dir / 'chat_template.json').is_file()
    model, processor, inputs, pairs = hf_native_and_release_answers(
        workspace, str(hf_dir), workspace / 'work_dirs' / 'release')
    for theirs, ours in pairs:
        assert theirs == ours
    assert sum(len(ours) for _, ours in pairs) > 10  # not all empty
    assert (inputs['input_ids'] == config['image_token_index']).sum() == 64
    with torch.no_grad():
        out = model(**inputs, output_router_logits=True)
    assert out.router_logits.shape == (1, 64, 4)
    assert out.router_logits.dtype == torch.float32
    assert out.selected_experts.shape == (1, 64, 2)
    from transformers import AutoModelForImageTextToText
    for dtype in (torch.bfloat16, torch.float16):
        low = AutoModelForImageTextToText.from_pretrained(
            hf_dir, trust_remote_code=True, torch_dtype=dtype)
        assert {p.dtype for p in low.parameters()} == {dtype}
        with torch.no_grad():
            routed = low(**inputs, output_router_logits=True)
        assert routed.router_logits.dtype == torch.float32


def test_official_save_format_is_refused_clearly(pipeline, workspace):
    result = run_tool(['-m', 'xtuner.tools.model_converters.pth_to_hf',
                       osp.join(CFG, SFT + '.py'), pipeline['sft'][1],
                       'work_dirs/official', '--save-format', 'official'],
                      cwd=workspace, check=False)
    assert result.returncode != 0
    assert 'no place for a MoE connector' in result.stderr
