"""Training the IXC2 family with XTuner, ChartMoE's recipe: IXC2's training
format and loss mask, ChartMoE-Data mixing, the trainable sets of each stage
(tiny and real size), LoRA on every token over a frozen Partial LoRA, the
LoRA merge, tiny align / SFT runs through ``xtuner.tools.train`` and the
real configs' settings."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from conftest import REPO, training_losses
from xtuner_chartmoe.dataset.chartmoe_data import (ChartMoEDataset, draw,
                                                   mix_records, read_mix)
from xtuner_chartmoe.families.ixc2.training_format import (
    IMAGE_TOKEN_INDEX, conversation_text, mask_human_targets,
    tokenize_conversation)

TINY = osp.join(REPO, 'configs', 'chartmoe', 'tiny')
REAL = osp.join(REPO, 'configs', 'chartmoe', 'internlm_xcomposer2_vl_7b',
                'chartmoe_internlm_xcomposer2_vl_7b_{}.py')
TARGETS = ['wqkv', 'wo', 'w1', 'w2', 'w3']


@pytest.fixture(scope='session')
def ixc2_ws(tmp_path_factory):
    """A folder laid out like the repo root with the tiny IXC2 default
    (8 charts) in work_dirs/tiny_ixc2."""
    from xtuner_chartmoe.devkit.tiny_ixc2 import build_tiny_ixc2
    root = tmp_path_factory.mktemp('ixc2_ws')
    build_tiny_ixc2(str(root / 'work_dirs' / 'tiny_ixc2'), num_charts=8,
                    num_workers=1, progress=False)
    return root


@pytest.fixture(scope='session')
def tiny(ixc2_ws):
    return ixc2_ws / 'work_dirs' / 'tiny_ixc2'


@pytest.fixture(scope='session')
def tokenizer(tiny):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny / 'ixc2', trust_remote_code=True)


def ixc2_llm(source, **kwargs):
    """The ``llm`` entry of an IXC2 config for ``source``."""
    from xtuner_chartmoe.families.ixc2.xtuner_model import build_ixc2
    return dict(type=build_ixc2, source=source, **kwargs)


def sft_model(tiny, **kwargs):
    from peft import LoraConfig

    from xtuner_chartmoe.families.ixc2.xtuner_model import IXC2ChartMoEModel
    torch.manual_seed(0)
    return IXC2ChartMoEModel(
        ixc2_llm(str(tiny / 'ixc2'), torch_dtype=torch.float32),
        moe_projector=dict(pretrained=str(tiny / 'moe_connector')),
        llm_lora=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                            target_modules=TARGETS),
        use_activation_checkpointing=False, **kwargs)


# -- training format ---------------------------------------------------------

HAND = [{'from': 'user', 'value': ' <ImageHere>What is x? '},
        {'from': 'assistant', 'value': 'Five. '},
        {'from': 'human', 'value': 'And y?'},
        {'from': 'gpt', 'value': 'Six.'}]


def test_conversation_text_is_chartmoe_conv2text():
    assert conversation_text(HAND) == (
        '[UNUSED_TOKEN_146]user\n<ImageHere>What is x?[UNUSED_TOKEN_145]\n'
        '[UNUSED_TOKEN_146]assistant\nFive.[UNUSED_TOKEN_145]\n'
        '[UNUSED_TOKEN_146]user\nAnd y?[UNUSED_TOKEN_145]\n'
        '[UNUSED_TOKEN_146]assistant\nSix.[UNUSED_TOKEN_145]\n</s>')


def test_mask_human_targets_is_ixc2s_with_its_header_of_five():
    u, a, t = 11, 22, 33  # user text, header text, answer text
    ids = [1, 92543, u, u, IMAGE_TOKEN_INDEX, u, 92542, 13, 92543, a, a, 13,
           t, t, 92542, 13, 92543, u, 92542, 13, 92543, a, a, 13, t, 92542,
           13, 2, 2, 2]
    labels = mask_human_targets(ids, header_length=5)
    x = -100
    assert labels == [x] * 12 + [t, t, 92542] + [x] * 9 + [t, 92542, 13, 2,
                                                            x, x]


def test_hand_example_tokens_and_labels(tokenizer):
    sample = tokenize_conversation(tokenizer, HAND)
    ids, labels = sample.input_ids, sample.labels
    assert sample.num_images == 1 and ids.count(IMAGE_TOKEN_INDEX) == 1
    assert ids[0] == 1 and ids.count(1) == 1  # <s> before the first part only
    image = ids.index(IMAGE_TOKEN_INDEX)
    assert tokenizer.decode(ids[:image]) == '<s>[UNUSED_TOKEN_146]user\n'
    assert tokenizer.decode(ids[image + 1:]) == conversation_text(
        HAND).split('<ImageHere>')[1]
    assert len(labels) == len(ids) and labels[image] == -100
    # the loss falls on the answers, their turn ends, the last \n and </s>
    learnt = [i for i in labels if i != -100]
    assert tokenizer.decode(learnt) == ('Five.[UNUSED_TOKEN_145]Six.'
                                        '[UNUSED_TOKEN_145]\n</s>')
    for i, label in enumerate(labels):  # labels are the ids where they count
        assert label in (-100, ids[i])
    masked = tokenizer.decode([t for t, lab in zip(ids, labels)
                               if lab == -100 and t >= 0])
    assert masked == ('<s>[UNUSED_TOKEN_146]user\nWhat is x?[UNUSED_TOKEN_145]'
                      '\n[UNUSED_TOKEN_146]assistant\n\n[UNUSED_TOKEN_146]user'
                      '\nAnd y?[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant'
                      '\n')


def test_batch_expands_images_and_truncates(tiny, tokenizer):
    from xtuner_chartmoe.families.ixc2.training_batch import (
        expand_images, ixc2_collate_fn)
    a = tokenize_conversation(tokenizer, HAND)
    b = tokenize_conversation(tokenizer, HAND[:2])
    batch = ixc2_collate_fn([
        {'input_ids': s.input_ids, 'labels': s.labels,
         'pixel_values': torch.zeros(1, 3, 112, 112)} for s in (a, b)])['data']
    embed = torch.nn.Embedding(92544, 8)
    visual = torch.randn(2, 64, 8)
    embeds, im_mask, labels, attention = expand_images(
        embed, batch['input_ids'], batch['labels'], batch['attention_mask'],
        visual, max_length=4096)
    n = len(a.input_ids) - 1 + 64
    assert embeds.shape == (2, n, 8) and int(im_mask[0].sum()) == 64
    image = a.input_ids.index(IMAGE_TOKEN_INDEX)
    assert torch.equal(embeds[0, image:image + 64], visual[0])
    assert torch.equal(embeds[1, image:image + 64], visual[1])
    assert (labels[0, image:image + 64] == -100).all()
    assert int(attention[1].sum()) == len(b.input_ids) - 1 + 64
    assert (labels[1, int(attention[1].sum()):] == -100).all()
    cut = expand_images(embed, batch['input_ids'], batch['labels'],
                        batch['attention_mask'], visual, max_length=20)
    assert cut[0].shape[1] == 20


# -- ChartMoE-Data mixing ----------------------------------------------------

def write_records(folder, name, n, bad=()):
    """``n`` good records in ``folder/name`` (images under folder), then
    the ``bad`` ones."""
    from PIL import Image
    Image.new('RGB', (8, 8)).save(folder / 'c.png')
    records = [{'id': i, 'image': ['c.png'], 'conversations': [
        {'from': 'user', 'value': f'<ImageHere>q{i}'},
        {'from': 'assistant', 'value': f'a{i}'}]} for i in range(n)]
    with open(folder / name, 'w') as f:
        json.dump(records + list(bad), f)
    return str(folder / name)


def test_mix_counts_are_thousands_sampled_or_padded_and_seeded(tmp_path):
    write_records(tmp_path, 'a.json', 10)
    write_records(tmp_path, 'b.json', 4)
    with open(tmp_path / 'mix.txt', 'w') as f:
        f.write('a.json 0.006\nb.json -1\n\n')
    assert read_mix(str(tmp_path / 'mix.txt'), str(tmp_path)) == [
        (str(tmp_path / 'a.json'), 0.006), (str(tmp_path / 'b.json'), -1.0)]
    mix = [('a.json', 0.006), ('b.json', -1)]
    first = mix_records(mix, str(tmp_path), seed=1, data_root=str(tmp_path))
    ids = [(osp.basename(p), r['id']) for p, r in first]
    assert len(ids) == 10 and ids[6:] == [('b.json', i) for i in range(4)]
    assert len({i for _, i in ids[:6]}) == 6  # sampled down, no repeats
    again = mix_records(str(tmp_path / 'mix.txt'), str(tmp_path), seed=1,
                        data_root=str(tmp_path))
    assert [r['id'] for _, r in again] == [i for _, i in ids]
    other = mix_records(mix, str(tmp_path), seed=2, data_root=str(tmp_path))
    assert [r['id'] for _, r in other] != [i for _, i in ids]
    padded = mix_records([('b.json', 9)], str(tmp_path), count_unit=1,
                         data_root=str(tmp_path))
    assert len(padded) == 9
    assert [r['id'] for _, r in padded[:4]] == [0, 1, 2, 3]


def test_count_beyond_the_file_without_repeats_names_it(tmp_path):
    path = write_records(tmp_path, 'b.json', 4)
    with pytest.raises(ValueError, match=r'b\.json: 0\.009 x 1000 = 9 '
                       r'samples asked but the file holds 4'):
        mix_records([(path, 0.009)], str(tmp_path), allow_repeat=False)
    import random
    with pytest.raises(ValueError, match='count -2'):
        draw([1], -2, 'f.json', random.Random(0))


def test_bad_records_are_named_and_skipped_or_raised(tmp_path):
    ok = {'from': 'user', 'value': '<ImageHere>q'}
    bad = [
        {'image': [], 'conversations': [ok, {'from': 'assistant',
                                             'value': 'a'}]},
        {'image': ['c.png', 'c.png'], 'conversations': [
            ok, {'from': 'assistant', 'value': 'a'}]},
        {'image': ['gone.png'], 'conversations': [
            ok, {'from': 'assistant', 'value': 'a'}]},
        {'image': ['c.png'], 'conversations': [
            ok, {'from': 'assistant', 'value': '  '}]},
        {'image': ['c.png'], 'conversations': [
            ok, {'from': 'user', 'value': 'again'}]},
    ]
    path = write_records(tmp_path, 'bad.json', 2, bad)
    mixed = mix_records([(path, -1)], str(tmp_path))
    assert len(mixed) == 2
    with pytest.raises(ValueError) as err:
        mix_records([(path, -1)], str(tmp_path), on_bad_record='error')
    text = str(err.value)
    assert text.startswith('5 bad record(s)')
    for index, reason in ((2, 'expected one image in "image", got 0'),
                          (3, 'got 2'), (4, 'image file missing'),
                          (5, 'turn 1 has an empty answer'),
                          (6, "turn 1 is from 'user'")):
        assert f'{path}[{index}]: ' in text and reason in text


def test_dataset_items_are_ixc2_samples(tiny, tokenizer):
    data = str(tiny / 'data')
    dataset = ChartMoEDataset([('chart2table.json', -1)], tokenizer,
                              image_size=112, data_root=data,
                              image_folder=data)
    item = dataset[0]
    assert item['pixel_values'].shape == (1, 3, 112, 112)
    assert item['input_ids'].count(IMAGE_TOKEN_INDEX) == 1
    assert item['input_ids'][-1] == 2 and item['labels'][-1] == 2


# -- what trains ------------------------------------------------------------

def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_tiny_align_trains_vision_proj_only(tiny):
    from xtuner_chartmoe.families.ixc2.xtuner_model import IXC2ChartMoEModel
    model = IXC2ChartMoEModel(
        ixc2_llm(str(tiny / 'ixc2'), torch_dtype='float32'),
        use_activation_checkpointing=False)
    assert model.llm is model.ixc2 and model.ixc2.output.weight.dtype == \
        torch.float32
    assert trainable(model) == {f'ixc2.vision_proj.{i}.{k}' for i in (0, 2)
                                for k in ('weight', 'bias')}
    assert set(model.state_dict()) == trainable(model)


def test_tiny_sft_trains_the_moe_and_lora_only(tiny):
    model = sft_model(tiny)
    names = trainable(model)
    moe = {n for n in names if n.startswith('ixc2.vision_proj.')}
    lora = names - moe
    assert 'ixc2.vision_proj.gate.weight' in moe
    assert len(moe) == 1 + 4 * 4
    assert lora and all('.lora_' in n for n in lora)
    assert len(lora) == 2 * 5 * 2  # A and B x 5 linears x 2 layers
    assert not any('Plora' in n for n in names)
    assert set(model.state_dict()) == names | {
        'ixc2.vision_proj.num_selected'}


def test_activation_checkpointing_gives_the_same_gradients(tiny, tokenizer):
    from xtuner_chartmoe.families.ixc2.training_batch import ixc2_collate_fn
    sample = tokenize_conversation(tokenizer, HAND)
    torch.manual_seed(2)
    batch = ixc2_collate_fn([{'input_ids': sample.input_ids,
                              'labels': sample.labels,
                              'pixel_values': torch.randn(1, 3, 112, 112)}])
    grads = []
    for checkpointing in (False, True):
        model = sft_model(tiny)
        model.ixc2.model.gradient_checkpointing = checkpointing
        torch.manual_seed(3)  # the Partial LoRA's dropout
        model(batch['data'])['loss'].backward()
        grads.append({n: p.grad for n, p in model.named_parameters()
                      if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_real_size_trainable_counts_on_meta():
    from peft import LoraConfig

    from xtuner_chartmoe.families.ixc2.standin import ixc2_config
    from xtuner_chartmoe.families.ixc2.xtuner_model import IXC2ChartMoEModel

    def count(model):
        return {part: sum(p.numel() for n, p in model.named_parameters()
                          if p.requires_grad and (part in n))
                for part in ('vision_proj', '.lora_', '')}

    with torch.device('meta'):
        align = IXC2ChartMoEModel(ixc2_llm(ixc2_config()),
                                  use_activation_checkpointing=False)
        sft = IXC2ChartMoEModel(
            ixc2_llm(ixc2_config(chartmoe=True)),
            use_activation_checkpointing=False,
            llm_lora=LoraConfig(r=64, lora_alpha=64, lora_dropout=0.05,
                                target_modules=TARGETS))
    assert count(align) == {'vision_proj': 20_979_712, '.lora_': 0,
                            '': 20_979_712}
    assert count(sft) == {'vision_proj': 83_922_944, '.lora_': 150_994_944,
                          '': 83_922_944 + 150_994_944}


def test_lora_acts_on_every_token_and_plora_on_images_only(tiny):
    model = sft_model(tiny).eval()
    layer = model.ixc2.model.layers[0].attention.wo
    base = layer.get_base_layer()
    torch.manual_seed(1)
    x = torch.randn(1, 6, base.in_features)
    im_mask = torch.tensor([[True, True, False, False, False, False]])
    with torch.no_grad():
        before = layer(x, im_mask)
        # the zero-initialised LoRA B: exactly the PLoRA linear
        torch.testing.assert_close(before, base(x, im_mask))
        plain = torch.nn.functional.linear(x, base.weight)
        assert torch.equal(before[0, 2:], plain[0, 2:])  # PLoRA: images only
        assert not torch.allclose(before[0, :2], plain[0, :2])
        layer.lora_B['default'].weight.normal_()
        after = layer(x, im_mask)
    delta = (x @ layer.lora_A['default'].weight.T @
             layer.lora_B['default'].weight.T) * layer.scaling['default']
    torch.testing.assert_close(after - before, delta, atol=1e-5, rtol=1e-4)
    assert (delta[0, 2:].abs() > 0).any()  # text tokens changed too


def test_merged_ixc2_is_the_trained_model_in_the_released_layout(
        tiny, tokenizer):
    from xtuner_chartmoe.families.ixc2.training_batch import ixc2_collate_fn
    model = sft_model(tiny).eval()
    for name, param in model.named_parameters():
        if 'lora_B' in name:
            torch.nn.init.normal_(param, std=0.05)
    sample = tokenize_conversation(tokenizer, HAND)
    batch = ixc2_collate_fn([{'input_ids': sample.input_ids,
                              'labels': sample.labels,
                              'pixel_values': torch.randn(1, 3, 112, 112)}])
    with torch.no_grad():
        loss = model(batch['data'])['loss']
        merged = model.merged_ixc2()
        model.ixc2 = merged
        merged_loss = model(batch['data'])['loss']
    torch.testing.assert_close(merged_loss, loss, atol=1e-5, rtol=1e-5)
    keys = set(merged.state_dict())
    assert not any('.lora_' in k or 'base_layer' in k for k in keys)
    assert 'model.layers.0.attention.wqkv.Plora_A.weight' in keys
    assert 'vision_proj.experts.3.2.bias' in keys
    assert merged.config.num_experts == 4


# -- tiny runs through XTuner ------------------------------------------------

RUNS = {
    'align': ('chartmoe_tiny_ixc2_align_table_e3_cpu.py',
              ['train_dataloader.dataset.times=2']),  # 3 steps of 4
    'sft': ('chartmoe_tiny_ixc2_lora_e12_cpu_sft.py',
            ['train_dataloader.dataset.times=1',  # 6 steps of 4
             'default_hooks.logger.interval=1',
             'model.llm_lora.lora_dropout=0']),
}


@pytest.fixture(scope='module')
def tiny_runs(ixc2_ws):
    """The tiny align (table) and SFT configs trained by
    ``python -m xtuner.tools.train``, both at once: ``{name: work dir}``."""
    import subprocess
    import sys
    procs = {}
    for name, (config, options) in RUNS.items():
        procs[name] = subprocess.Popen(
            [sys.executable, '-m', 'xtuner.tools.train',
             osp.join(TINY, config), '--work-dir', f'work_dirs/ixc2_{name}',
             '--cfg-options', 'randomness.seed=0', *options],
            cwd=ixc2_ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
    for name, proc in procs.items():
        out = proc.communicate()[0]
        assert proc.returncode == 0, f'{name} failed:\n{out[-5000:]}'
    return {name: ixc2_ws / f'work_dirs/ixc2_{name}' for name in RUNS}


def trained_state(work_dir):
    from xtuner.model.utils import guess_load_checkpoint

    from xtuner_chartmoe.engine.run_log import last_checkpoint
    return guess_load_checkpoint(last_checkpoint(str(work_dir)))


def losses_before_and_after(ws, name, work_dir, monkeypatch):
    """The loss of run ``name``'s model on its first 4 training samples,
    untrained and with the checkpoint in ``work_dir`` loaded (no
    dropout)."""
    from xtuner.registry import BUILDER

    from xtuner_chartmoe.families.ixc2.training_batch import ixc2_collate_fn
    monkeypatch.chdir(ws)
    cfg = Config.fromfile(osp.join(TINY, RUNS[name][0]))
    torch.manual_seed(0)
    model = BUILDER.build(cfg.model).eval()
    dataset = BUILDER.build(cfg.train_dataset)
    batch = ixc2_collate_fn([dataset[i] for i in range(4)])['data']
    with torch.no_grad():
        before = model(batch)['loss'].item()
        model.load_state_dict(trained_state(work_dir), strict=False)
        after = model(batch)['loss'].item()
    return before, after


def test_tiny_align_run(ixc2_ws, tiny_runs, monkeypatch):
    assert len(training_losses(tiny_runs['align'])) == 3
    state = trained_state(tiny_runs['align'])
    assert set(state) == {f'ixc2.vision_proj.{i}.{k}' for i in (0, 2)
                          for k in ('weight', 'bias')}
    before, after = losses_before_and_after(ixc2_ws, 'align',
                                            tiny_runs['align'], monkeypatch)
    assert after < before - 1e-3


def test_tiny_sft_run(ixc2_ws, tiny_runs, monkeypatch):
    work_dir = tiny_runs['sft']
    assert len(training_losses(work_dir)) == 6
    state = trained_state(work_dir)
    assert 'ixc2.vision_proj.gate.weight' in state
    assert all(k.startswith('ixc2.vision_proj.') or '.lora_' in k
               for k in state)
    assert sum('.lora_' in k for k in state) == 20
    log = ''.join(open(p).read() for p in work_dir.glob('*/*.log'))
    assert 'load_general' in log and 'Sample output' in log
    before, after = losses_before_and_after(ixc2_ws, 'sft', work_dir,
                                            monkeypatch)
    assert after < before - 1e-3
    # a later stage starts from it (pretrained_pth, e.g. knowledge -> SFT)
    from xtuner.registry import BUILDER

    from xtuner_chartmoe.engine.run_log import last_checkpoint
    cfg = Config.fromfile(osp.join(TINY, RUNS['sft'][0]))
    cfg.model.pretrained_pth = last_checkpoint(str(work_dir))
    resumed = BUILDER.build(cfg.model)  # in ixc2_ws (monkeypatch.chdir)
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, state[key].to(value.dtype)), key


# -- the real configs --------------------------------------------------------

@pytest.mark.parametrize('expert, thousands', [('table', 500), ('json', 200),
                                               ('code', 300)])
def test_real_align_recipe(expert, thousands):
    cfg = Config.fromfile(REAL.format(f'align_{expert}_e1_gpu4'))
    model = cfg.model
    assert (model.freeze_llm, model.freeze_visual_encoder) == (True, True)
    assert 'llm_lora' not in model and 'moe_projector' not in model
    assert model.llm.source == 'Coobiw/InternLM-XComposer2_Enhanced'
    assert model.llm.torch_dtype == torch.bfloat16
    assert model.max_length == 4096 and model.use_activation_checkpointing
    dataset = cfg.train_dataloader.dataset
    assert dataset.data_mix == [(f'chart2{expert}.json', thousands)]
    assert (dataset.count_unit, dataset.image_size) == (1000, 490)
    assert dataset.data_root == './data/ChartMoE-Data/'
    assert cfg.train_dataloader.batch_size * \
        cfg.optim_wrapper.accumulative_counts * 4 == 256
    check_optimisation(cfg)


def check_optimisation(cfg):
    optim = cfg.optim_wrapper
    assert optim.type.__name__ == 'AmpOptimWrapper'
    assert optim.dtype == 'bfloat16'
    assert (optim.optimizer.lr, optim.optimizer.betas,
            optim.optimizer.weight_decay) == (5e-5, (0.9, 0.95), 0.1)
    assert [s.type.__name__ for s in cfg.param_scheduler] == [
        'CosineAnnealingLR']  # no warmup
    assert cfg.train_cfg.max_epochs == 1


@pytest.mark.parametrize('stage, data_mix', [
    ('lora_e1_gpu4_sft', [('chartqa.json', 70), ('chartgemma.json', -1)]),
    ('lora_e1_gpu4_knowledge', [('chart2table.json', 500),
                                ('chart2json.json', 200),
                                ('chart2code.json', 300)]),
    ('qlora_e1_gpu4_sft', [('chartqa.json', 70), ('chartgemma.json', -1)])])
def test_real_sft_recipes(stage, data_mix):
    cfg = Config.fromfile(REAL.format(stage))
    model = cfg.model
    lora = model.llm_lora
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.bias) == (
        64, 64, 0.05, 'none')
    assert lora.target_modules == TARGETS
    assert model.moe_projector == dict(
        pretrained='./work_dirs/chartmoe_ixc2_moe_connector')
    assert model.freeze_visual_encoder is True
    assert cfg.train_dataloader.dataset.data_mix == data_mix
    assert cfg.train_dataloader.batch_size * \
        cfg.optim_wrapper.accumulative_counts * 4 == 64
    assert cfg.train_dataloader.batch_size == 2
    assert ('quantization_config' in model.llm) == stage.startswith('qlora')
    check_optimisation(cfg)


def test_qlora_without_cuda_stops_with_one_line(tiny):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    from xtuner.registry import BUILDER

    from xtuner_chartmoe.model.chartmoe import QLoRANeedsCUDA
    cfg = Config.fromfile(REAL.format('qlora_e1_gpu4_sft'))
    cfg.model.llm.source = str(tiny / 'ixc2')
    with pytest.raises(QLoRANeedsCUDA, match='chartmoe_internlm_xcomposer2_'
                       'vl_7b_lora_e1_gpu4_sft instead'):
        BUILDER.build(cfg.model)
