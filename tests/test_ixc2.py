"""The IXC2 family (xtuner_chartmoe/families/ixc2): InternLM-XComposer2-VL-7B
and ChartMoE on stand-ins built offline.

Narrow stand-ins (hidden 64, the real vocabulary and special-token ids) for
everything but one real-width test (1 LLM + 1 vision layer) and the
full-size counts on the meta device.
"""
import json
import os
import os.path as osp
import shutil
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from xtuner_chartmoe.evaluation.metrics import relaxed_correct
from xtuner_chartmoe.families.ixc2 import (CheckpointError,
                                           CheckpointFileNotFound,
                                           ImageLoadError, ImageSlot,
                                           chartmoe_answer, chat,
                                           embed_segments, encode_images,
                                           generate_reply, load_ixc2,
                                           native_chat_prompt,
                                           native_segments)
from xtuner_chartmoe.evaluation import chartmoe_reference
from xtuner_chartmoe.families.ixc2 import chartmoe_protocol as protocol
from xtuner_chartmoe.families.ixc2.modeling_internlm2_plora import PLoRALinear
from xtuner_chartmoe.families.ixc2.modeling_vision import (
    image_to_tensor, interpolate_position_table)
from xtuner_chartmoe.families.ixc2.standin import (
    CHARTMOE_REPO, IXC2_REPO, RELEASES, build_ixc2_standins, build_on_meta,
    ixc2_config, parameter_counts, write_release)

NARROW = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, plora_r=8, plora_alpha=16,
              vision_config=dict(hidden_size=32, intermediate_size=64,
                                 num_attention_heads=2))
IMAGE_TOKENS = 1225


def published_layout(num_layers=32, vision_layers=24, moe=False):
    """The released state dict's keys and shapes (IXC2-VL-7B, or ChartMoE's
    with ``moe``): InternLM2 with Partial LoRA r=256, CLIP ViT-L/14 with the
    1226-row position table, ``vision_proj`` dense or 4 experts + gate."""
    d, inner, qkv, r, vocab, v, vi = 4096, 14336, 6144, 256, 92544, 1024, 4096
    layout = {'model.tok_embeddings.weight': (vocab, d),
              'model.norm.weight': (d,), 'output.weight': (vocab, d)}
    for n in range(num_layers):
        p = f'model.layers.{n}.'
        for name, out_f, in_f in (('attention.wqkv', qkv, d),
                                  ('attention.wo', d, d),
                                  ('feed_forward.w1', inner, d),
                                  ('feed_forward.w3', inner, d),
                                  ('feed_forward.w2', d, inner)):
            layout[p + name + '.weight'] = (out_f, in_f)
            layout[p + name + '.Plora_A.weight'] = (r, in_f)
            layout[p + name + '.Plora_B.weight'] = (out_f, r)
        layout[p + 'attention_norm.weight'] = (d,)
        layout[p + 'ffn_norm.weight'] = (d,)
    t = 'vit.vision_tower.vision_model.'
    layout.update({t + 'embeddings.class_embedding': (v,),
                   t + 'embeddings.patch_embedding.weight': (v, 3, 14, 14),
                   t + 'embeddings.position_embedding.weight': (1226, v)})
    for part in ('pre_layrnorm', 'post_layernorm'):
        layout[t + part + '.weight'] = layout[t + part + '.bias'] = (v,)
    for m in range(vision_layers):
        p = f'{t}encoder.layers.{m}.'
        for proj in 'qkvo':
            name = 'out_proj' if proj == 'o' else f'{proj}_proj'
            layout[f'{p}self_attn.{name}.weight'] = (v, v)
            layout[f'{p}self_attn.{name}.bias'] = (v,)
        for norm in ('layer_norm1', 'layer_norm2'):
            layout[f'{p}{norm}.weight'] = layout[f'{p}{norm}.bias'] = (v,)
        layout.update({p + 'mlp.fc1.weight': (vi, v), p + 'mlp.fc1.bias': (vi,),
                       p + 'mlp.fc2.weight': (v, vi), p + 'mlp.fc2.bias': (v,)})
    mlps = [f'vision_proj.experts.{e}.' for e in range(4)] if moe else \
        ['vision_proj.']
    for mlp in mlps:
        layout.update({mlp + '0.weight': (d, v), mlp + '0.bias': (d,),
                       mlp + '2.weight': (d, d), mlp + '2.bias': (d,)})
    if moe:
        layout['vision_proj.gate.weight'] = (4, v)
    return layout


def stored_layout(folder):
    """``{key: shape}`` of a folder's safetensors files (headers only)."""
    from safetensors import safe_open
    layout = {}
    for name in os.listdir(folder):
        if name.endswith('.safetensors'):
            with safe_open(osp.join(folder, name), 'pt') as f:
                layout.update({k: tuple(f.get_slice(k).get_shape())
                               for k in f.keys()})
    return layout


@pytest.fixture(scope='module')
def standins(tmp_path_factory):
    """Narrow stand-ins of the four releases (2 LLM layers, 1 vision layer,
    fp32, sharded safetensors with an index) in a hub cache."""
    return build_ixc2_standins(tmp_path_factory.mktemp('ixc2'), llm_layers=2,
                               vision_layers=1, dtype=torch.float32,
                               max_shard_size='4MB', **NARROW)


@pytest.fixture(scope='module')
def chartmoe(standins):
    """The ChartMoE stand-in loaded by its repo id: (model, tokenizer,
    report)."""
    return load_ixc2(CHARTMOE_REPO, cache_dir=standins['hf_cache'])


@pytest.fixture(scope='module')
def chart(tmp_path_factory):
    from PIL import Image, ImageDraw
    img = Image.new('RGB', (320, 240), 'white')
    ImageDraw.Draw(img).rectangle((40, 60, 120, 220), fill='steelblue')
    path = tmp_path_factory.mktemp('img') / 'chart.png'
    img.save(path)
    return str(path)


def prompt_embeds(model, tokenizer, chart, text='How many bars?'):
    tokens = encode_images(model, [chart])
    return embed_segments(model, protocol.chartmoe_segments(
        tokenizer, protocol.chartqa_prompt(text)), tokens)


# --- sizes and layout --------------------------------------------------------

def test_full_size_counts_on_meta():
    ixc2 = parameter_counts(build_on_meta(chartmoe=False))
    moe = parameter_counts(build_on_meta(chartmoe=True))
    assert ixc2['total'] == 8_666_840_064
    assert ixc2['plora'] == 603_979_776
    assert ixc2['position_table'] == 1226 * 1024
    assert ixc2['vision_proj'] == 20_979_712
    assert moe['total'] == 8_729_783_296
    assert moe['vision_proj'] == 83_922_944


@pytest.mark.parametrize('moe', [False, True])
def test_model_keys_are_the_published_layout(moe):
    model = build_on_meta(chartmoe=moe)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()
             if k != 'vision_proj.num_selected'}
    assert state == published_layout(moe=moe)


def test_real_width_chartmoe_standin(tmp_path, chart):
    """Real widths, 1 LLM + 1 vision layer, bf16 on disk: the stored keys
    and shapes are the published ones (cut depth), the tokenizer has the
    real special ids, and a 490-px image gives 1225 x 4096 tokens."""
    paths = build_ixc2_standins(tmp_path, llm_layers=1, vision_layers=1,
                                repos=(CHARTMOE_REPO,))
    folder = paths[CHARTMOE_REPO]
    assert stored_layout(folder) == published_layout(1, 1, moe=True)
    with open(osp.join(folder, 'config.json')) as f:
        config = json.load(f)
    assert (config['num_experts'], config['num_selected'],
            config['img_size']) == (4, 2, 490)
    model, tokenizer, report = load_ixc2(folder)
    assert report.dtype == 'bfloat16' and model.dtype == torch.bfloat16
    assert [tokenizer.convert_tokens_to_ids(t) for t in (
        '<s>', '</s>', '[UNUSED_TOKEN_145]', '[UNUSED_TOKEN_146]')] == \
        [1, 2, 92542, 92543]
    assert tokenizer('[UNUSED_TOKEN_146]user\n', add_special_tokens=False)[
        'input_ids'][0] == 92543
    tokens = encode_images(model, [chart])
    assert tokens.shape == (1, IMAGE_TOKENS, 4096)
    assert torch.isfinite(tokens).all()


# --- vision path ---------------------------------------------------------------

def test_1225_tokens_per_490_px_image(chartmoe, chart):
    from PIL import Image
    model, _, _ = chartmoe
    table = model.vit.vision_tower.vision_model.embeddings.position_embedding
    assert table.weight.shape[0] == 1226
    tokens = encode_images(model, [chart, Image.open(chart).resize((90, 700))])
    assert tokens.shape == (2, IMAGE_TOKENS, 64)
    assert model.config.num_image_tokens == IMAGE_TOKENS


def test_position_table_resized_bicubically_from_336px():
    table = torch.randn(577, 8)
    out = interpolate_position_table(table, 35)
    assert out.shape == (1226, 8) and torch.equal(out[0], table[0])
    grid = table[1:].reshape(24, 24, 8).permute(2, 0, 1)[None]
    ref = F.interpolate(grid, size=(35, 35), mode='bicubic',
                        align_corners=False)[0].permute(1, 2, 0)
    assert torch.allclose(out[1:], ref.reshape(1225, 8))


def test_preprocessing_is_ixc2s_vis_processor(chart):
    from PIL import Image
    from torchvision import transforms
    ref = transforms.Compose([
        transforms.Resize((490, 490),
                          interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073),
                             (0.26862954, 0.26130258, 0.27577711))])
    expected = ref(Image.open(chart).convert('RGB'))
    assert torch.allclose(image_to_tensor(chart, 490), expected, atol=1e-6)


def test_unreadable_image_is_named(tmp_path, chartmoe):
    bad = tmp_path / 'broken.png'
    bad.write_bytes(b'not a png')
    with pytest.raises(ImageLoadError, match='broken.png'):
        encode_images(chartmoe[0], [str(bad)])


# --- Partial LoRA --------------------------------------------------------------

def test_plora_linear_changes_masked_rows_only():
    torch.manual_seed(0)
    layer = PLoRALinear(16, 24, False, 4, 8, 0.0)
    torch.nn.init.normal_(layer.Plora_B.weight)
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]], dtype=torch.bool)
    out = layer(x, mask)
    base = F.linear(x, layer.weight)
    delta = layer.Plora_B(layer.Plora_A(x)) * 2.0  # alpha / r = 8 / 4
    assert torch.equal(out[~mask], base[~mask])
    assert torch.allclose(out[mask], (base + delta)[mask], atol=1e-6)
    assert torch.equal(layer(x, None), base)


def test_plora_only_at_image_positions_and_never_at_decode(chartmoe, chart):
    model, tokenizer, _ = chartmoe
    embeds, im_mask = prompt_embeds(model, tokenizer, chart)
    assert im_mask[0].tolist() == [False] + [True] * IMAGE_TOKENS + [False] * (
        im_mask.shape[1] - IMAGE_TOKENS - 1)
    with torch.no_grad():
        with_mask = model(inputs_embeds=embeds, im_mask=im_mask).logits
        without = model(inputs_embeds=embeds, im_mask=None).logits
        text_only = model(inputs_embeds=embeds,
                          im_mask=torch.zeros_like(im_mask)).logits
    assert torch.equal(with_mask[:, 0], without[:, 0])  # <s> before the image
    assert not torch.allclose(with_mask[:, 1:], without[:, 1:])
    assert torch.equal(without, text_only)
    calls = []
    hooks = [m.register_forward_pre_hook(
        lambda mod, args: calls.append(args[1] is not None))
        for m in model.modules() if isinstance(m, PLoRALinear)]
    try:
        generate_reply(model, tokenizer, embeds, im_mask, max_new_tokens=3,
                       do_sample=False, min_new_tokens=3)
    finally:
        for hook in hooks:
            hook.remove()
    per_step = len(hooks)  # 5 linears x 2 layers
    assert calls == [True] * per_step + [False] * 2 * per_step


# --- training forward vs inference path ---------------------------------------

def test_cached_decode_equals_full_forward(chartmoe, standins, chart):
    """The training forward (whole sequence, labels) and the inference path
    (prefill, then cached decode steps fed token ids) give the same logits;
    eager attention (fp32 softmax) agrees with sdpa."""
    model, tokenizer, _ = chartmoe
    embeds, im_mask = prompt_embeds(model, tokenizer, chart)
    n = embeds.shape[1]
    answer = torch.tensor([[17, 250, 92542, 2]])
    full_embeds = torch.cat([embeds, model.embed_tokens(answer)], 1)
    full_mask = torch.cat([im_mask, torch.zeros_like(answer, dtype=bool)], 1)
    labels = torch.full(full_mask.shape, -100)
    labels[:, n:] = answer
    with torch.no_grad():
        train = model(inputs_embeds=full_embeds, im_mask=full_mask,
                      labels=labels)
        cache = DynamicCache()
        steps = [model(inputs_embeds=embeds, im_mask=im_mask,
                       past_key_values=cache, use_cache=True,
                       num_logits_to_keep=1).logits]
        for token in answer[0, :-1]:
            steps.append(model(input_ids=token.view(1, 1),
                               past_key_values=cache, use_cache=True).logits)
    cached = torch.cat(steps, 1)
    assert torch.allclose(train.logits[:, n - 1:-1], cached, atol=1e-4,
                          rtol=1e-4)
    expected = F.cross_entropy(train.logits[0, n - 1:-1], answer[0])
    assert torch.allclose(train.loss, expected)
    eager = load_ixc2(CHARTMOE_REPO, attn_implementation='eager',
                      cache_dir=standins['hf_cache'], tokenizer=False).model
    with torch.no_grad():
        eager_logits = eager(inputs_embeds=full_embeds, im_mask=full_mask,
                             num_logits_to_keep=8).logits
    assert torch.allclose(eager_logits, train.logits[:, -8:], atol=1e-4,
                          rtol=1e-4)


# --- sequences and ChartMoE's protocol -----------------------------------------

def test_chartmoe_prompts_are_the_references():
    q = 'What is the value of Japan?'
    assert protocol.chartqa_prompt(q) == (
        '[UNUSED_TOKEN_146]user\nAnswer the question using a single word or '
        'phrase.What is the value of Japan?[UNUSED_TOKEN_145]\n'
        '[UNUSED_TOKEN_146]assistant\n')
    assert protocol.chartqa_prompt(q, pot=True) == (
        '[UNUSED_TOKEN_146]user\nPlease give the program of thought.What is '
        'the value of Japan?[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n')
    assert protocol.chartqa_prompt(q, pot=True, pot_idx=1) == (
        '[UNUSED_TOKEN_146]user\nPlease give the program of thought in python'
        ' code. Use print function to output the answer in the end.What is '
        'the value of Japan?[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n')


def test_chartmoe_layout_bos_image_prompt(chartmoe):
    _, tokenizer, _ = chartmoe
    prompt = protocol.chartqa_prompt('Max?')
    segments = protocol.chartmoe_segments(tokenizer, prompt)
    ids = tokenizer(prompt, add_special_tokens=False)['input_ids']
    assert segments == [[1], ImageSlot(0), ids]
    assert ids[0] == 92543 and 1 not in ids  # no system turn, no 2nd <s>


def test_native_chat_format(chartmoe):
    _, tokenizer, _ = chartmoe
    prompt = native_chat_prompt('<ImageHere>Describe.', [('Hi', 'Hello')],
                                meta_instruction='Be brief.')
    assert prompt == (
        '[UNUSED_TOKEN_146]system\nBe brief.[UNUSED_TOKEN_145]\n'
        '[UNUSED_TOKEN_146]user\nHi[UNUSED_TOKEN_145]\n'
        '[UNUSED_TOKEN_146]assistant\nHello[UNUSED_TOKEN_145]\n'
        '[UNUSED_TOKEN_146]user\n<ImageHere>Describe.[UNUSED_TOKEN_145]\n'
        '[UNUSED_TOKEN_146]assistant\n')
    before, image, after = native_segments(tokenizer, prompt)
    assert image == ImageSlot(0)
    assert before[0] == 1 and after[0] == 1  # <s> before every text part
    assert native_chat_prompt('Q', meta_instruction='') == (
        '[UNUSED_TOKEN_146]user\nQ[UNUSED_TOKEN_145]\n'
        '[UNUSED_TOKEN_146]assistant\n')


def test_pot_extraction_and_answer():
    reply = 'Steps:\n```python\nx = 3\nprint(x > 2)\n```\n```python\n1\n```'
    assert chartmoe_reference.extract_program(reply) == '\nx = 3\nprint(x > 2)\n'
    assert chartmoe_reference.extract_program('print(4)') == 'print(4)'
    assert chartmoe_reference.pot_answer('True\n') == 'Yes'
    assert chartmoe_reference.pot_answer('False, True\n') == 'No, Yes'
    assert chartmoe_reference.pot_answer(None) == 'error running...'


@pytest.mark.parametrize('prediction, labels, ref, ours', [
    ('12.3', '12', True, True),           # within 5 %
    ('1,234', '1234', True, True),        # commas removed
    ('13', '12', False, False),           # 8.3 % off
    ('-5', '5', True, False),             # the reference ignores the sign
    ('45%', '45', True, True),
    ('0.04', '0', True, False),           # absolute error at target 0
    ('', 'Japan', True, False),           # empty: a substring of anything
    ('app', 'apple', True, False),        # substring rule
    ('Yes, it is', 'yes', True, False),   # both contain "yes"
    ('Not sure', 'November', True, False),  # both contain "no"
    ('JAPAN', 'japan', True, True),
    ('China', ['Japan', 'china'], True, True),  # best over labels
    ('Peru', 'Chile', False, False),
])
def test_reference_scorer_against_ours(prediction, labels, ref, ours):
    assert chartmoe_reference.relaxed_score(prediction, labels) is ref
    assert relaxed_correct(prediction, labels) is ours


def test_reference_scorer_tolerances():
    assert not chartmoe_reference.relaxed_acc('11', '10', 0.05)
    assert chartmoe_reference.relaxed_acc('11', '10', 0.1)
    assert chartmoe_reference.relaxed_acc('1.2.3', '1.2.3')  # no float: text equality


# --- generation ----------------------------------------------------------------

def test_generation_produces_tokens_and_stops(standins, chart):
    model, tokenizer, _ = load_ixc2(CHARTMOE_REPO,
                                    cache_dir=standins['hf_cache'])
    prompt = protocol.chartqa_prompt('Max?')
    reply = chartmoe_answer(model, tokenizer, chart, prompt, max_new_tokens=4)
    assert len(reply.token_ids) == 4
    first = reply.token_ids[0]
    for stop in (92542, 2):  # make the stop token the greedy first choice
        with torch.no_grad():
            model.output.weight[stop] = 3 * model.output.weight[first]
        reply = chartmoe_answer(model, tokenizer, chart, prompt,
                                max_new_tokens=4)
        assert reply == ('', [])
        model.output.weight.data[stop] = 0
    text, history = chat(model, tokenizer, 'Describe the chart.', [chart],
                         max_new_tokens=3, do_sample=False)
    assert history == [('<ImageHere>Describe the chart.', text)]


# --- loading -------------------------------------------------------------------

def test_loads_every_release_by_repo_id(standins):
    for repo, moe in RELEASES.items():
        model, tokenizer, report = load_ixc2(repo,
                                             cache_dir=standins['hf_cache'])
        assert model.is_moe is moe
        assert report.format == 'safetensors' and len(report.files) > 1
        assert report.folder == standins[repo]
        assert type(tokenizer).__name__ == 'InternLMXComposer2Tokenizer'
        # the release's remote model code is there and was never imported
        assert osp.isfile(osp.join(report.folder,
                                   'modeling_internlm_xcomposer2.py'))
    assert not any('modeling_internlm_xcomposer2' in name
                   for name in sys.modules)
    assert 'ChartMoE (4 experts, top-2)' in report.summary()


@pytest.mark.parametrize('safe, dtype, shard', [
    (False, torch.float16, '100GB'),     # one pytorch_model.bin, fp16
    (False, torch.bfloat16, '4MB'),      # sharded .bin with an index
    (True, torch.bfloat16, '100GB'),     # one model.safetensors, bf16
])
def test_formats_and_dtypes(tmp_path, standins, chart, safe, dtype, shard):
    folder = write_release(str(tmp_path / 'release'),
                           ixc2_config(2, 1, True, **NARROW),
                           _tokenizer_dir(standins, tmp_path), seed=2,
                           dtype=dtype, safe_serialization=safe,
                           max_shard_size=shard)
    model, tokenizer, report = load_ixc2(folder)
    assert report.format == ('safetensors' if safe else 'bin')
    assert (len(report.files) > 1) == (shard == '4MB')
    assert model.dtype == dtype and report.stored_dtype == str(dtype)[6:]
    fp32 = load_ixc2(folder, torch_dtype=torch.float32, tokenizer=False).model
    assert fp32.dtype == torch.float32
    embeds, im_mask = prompt_embeds(fp32, tokenizer, chart)
    with torch.no_grad():
        assert torch.isfinite(fp32(inputs_embeds=embeds,
                                   im_mask=im_mask).logits).all()


def _tokenizer_dir(standins, tmp_path):
    """The tokenizer files of a stand-in release (no weights, no config)."""
    out = tmp_path / 'tokenizer'
    out.mkdir(exist_ok=True)
    for name in os.listdir(standins[IXC2_REPO]):
        if name.startswith(('tokeniz', 'special_tokens')):
            shutil.copy(osp.join(standins[IXC2_REPO], name), out)
    return str(out)


def _copy(standins, repo, tmp_path):
    folder = tmp_path / repo.replace('/', '--')
    shutil.copytree(standins[repo], folder)
    return folder


def _edit_json(path, **changes):
    with open(path) as f:
        data = json.load(f)
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    with open(path, 'w') as f:
        json.dump(data, f)


def test_missing_shard_is_named(tmp_path, standins):
    folder = _copy(standins, CHARTMOE_REPO, tmp_path)
    os.remove(folder / 'model-00002-of-00003.safetensors')
    with pytest.raises(CheckpointFileNotFound,
                       match='model-00002-of-00003.safetensors'):
        load_ixc2(str(folder))


def test_another_architecture_is_refused(tmp_path, standins):
    folder = _copy(standins, IXC2_REPO, tmp_path)
    _edit_json(folder / 'config.json', architectures=[
        'LlavaForConditionalGeneration'], model_type='llava', img_size=None)
    with pytest.raises(CheckpointError,
                       match=r'config.json: not an InternLM-XComposer2.*'
                             r'LlavaForConditionalGeneration.*img_size'):
        load_ixc2(str(folder))
    other = tmp_path / 'other'
    other.mkdir()
    shutil.copy(folder / 'tokenizer_config.json', other)
    _edit_json(folder / 'config.json', img_size=490)
    shutil.copy(folder / 'config.json', other)
    from safetensors.torch import save_file
    save_file({'language_model.lm_head.weight': torch.zeros(2, 2)},
              str(other / 'model.safetensors'))
    with pytest.raises(CheckpointError, match='not an InternLM-XComposer2 '
                                              'checkpoint.*language_model'):
        load_ixc2(str(other))
    with pytest.raises(CheckpointFileNotFound, match='nobody/nothing'):
        load_ixc2('nobody/nothing', cache_dir=standins['hf_cache'])


def test_config_weights_mismatch_is_explained(tmp_path, standins):
    folder = _copy(standins, CHARTMOE_REPO, tmp_path)
    _edit_json(folder / 'config.json', num_experts=None, num_selected=None)
    with pytest.raises(CheckpointError, match='vision_proj.experts.*Hint: '
                                              'the weights hold a MoE'):
        load_ixc2(str(folder))
    _edit_json(folder / 'config.json', num_experts=4, num_selected=2,
               num_hidden_layers=3)
    with pytest.raises(CheckpointError, match='model.layers.2.*allow_partial'
                       '|num_hidden_layers=3'):
        load_ixc2(str(folder))
    _edit_json(folder / 'config.json', num_hidden_layers=2, hidden_size=128)
    with pytest.raises(CheckpointError, match='shapes differ.*expected'):
        load_ixc2(str(folder))


def test_partial_load_refused_unless_asked(tmp_path, standins):
    from safetensors.torch import load_file, save_file
    folder = _copy(standins, CHARTMOE_REPO, tmp_path)
    with open(folder / 'model.safetensors.index.json') as f:
        weight_map = json.load(f)['weight_map']
    dropped = sorted(k for k in weight_map if k.startswith('vision_proj.'))
    for shard in sorted({weight_map[k] for k in dropped}):
        state = load_file(str(folder / shard))
        save_file({k: v for k, v in state.items() if k not in dropped},
                  str(folder / shard), metadata={'format': 'pt'})
    with pytest.raises(CheckpointError, match='index names tensors its '
                                              'shards do not hold.*vision_proj'):
        load_ixc2(str(folder))
    _edit_json(folder / 'model.safetensors.index.json', weight_map={
        k: v for k, v in weight_map.items() if k not in dropped})
    with pytest.raises(CheckpointError, match='not in the weights: '
                       r'\[vision_proj.*allow_partial=True'):
        load_ixc2(str(folder))
    model, _, report = load_ixc2(str(folder), allow_partial=True,
                                 tokenizer=False)
    assert report.fresh == dropped
    assert 'NOT IN THE CHECKPOINT' in report.summary()
    assert not any(p.is_meta for p in model.parameters())


# --- the family's ChatModel: IXC2Chat ----------------------------------------

QUESTIONS = ('Max?',
             ('Which bar is the highest one, and by how much does it exceed '
              'the second highest bar in the chart?'),
             'What is the value of Japan?')


@pytest.fixture(scope='module')
def images(chart):
    from PIL import Image, ImageDraw
    img = Image.new('RGB', (200, 300), 'ivory')
    ImageDraw.Draw(img).ellipse((20, 30, 180, 250), fill='darkorange')
    return [chart, img, Image.open(chart).rotate(90, expand=True)]


@pytest.fixture(scope='module')
def chartmoe_chat(chartmoe):
    from xtuner_chartmoe.families.ixc2 import IXC2Chat
    model, tokenizer, report = chartmoe
    return IXC2Chat(model, tokenizer, report)


def test_chat_answers_batched_as_one_by_one_as_chartmoe_answer(
        chartmoe_chat, images):
    """Left-padded batch == each sample alone == ``chartmoe_answer``
    (ChartMoE's protocol): the replies, and the next-token logits at every
    step (prefill and cached decode steps under the padding mask)."""
    chat_model = chartmoe_chat
    model, tokenizer = chat_model.model, chat_model.tokenizer
    questions = [chartmoe_reference.SHORT_ANSWER_INSTRUCTION + q for q in QUESTIONS]
    lengths = {len(tokenizer(protocol.PROMPT_TEMPLATE.format(q),
                             add_special_tokens=False)['input_ids'])
               for q in questions}
    assert len(lengths) == len(questions)  # every prompt padded differently
    steps = []
    hook = model.output.register_forward_hook(
        lambda module, args, out: steps.append(out[:, -1]))
    try:
        batched = chat_model.answer(images, questions, max_new_tokens=5)
        batched_steps = torch.stack(steps, 1)
        alone, alone_steps = [], []
        for image, q in zip(images, questions):
            steps.clear()
            alone += chat_model.answer([image], [q], max_new_tokens=5)
            alone_steps.append(torch.cat(steps))
    finally:
        hook.remove()
    reference = [chartmoe_answer(model, tokenizer, image,
                                 protocol.chartqa_prompt(q), max_new_tokens=5)
                 for image, q in zip(images, QUESTIONS)]
    assert batched == alone == [r.text for r in reference]
    assert any(batched), 'the stand-in stopped at once: nothing compared'
    for row, alone_row in zip(batched_steps, alone_steps):
        assert torch.allclose(row[:len(alone_row)], alone_row, atol=1e-4,
                              rtol=1e-4)


def test_chat_left_padding_keeps_the_logits(chartmoe_chat, images):
    """A left-padded prompt's last logits are its unpadded ones, with the
    positions ``generate`` derives from the mask (what the batch uses) and
    with positions counted from the padding (IXC2's own rotary, which
    ignores position_ids): RoPE scores depend on relative positions only
    and the padding is masked out."""
    from xtuner_chartmoe.families.ixc2.generation import left_pad_sequences
    chat_model = chartmoe_chat
    model = chat_model.model
    tokens, _ = chat_model.encode_images(images[:2])
    short, long = (chat_model.sequence(t, q)
                   for t, q in zip(tokens, QUESTIONS[:2]))
    embeds, im_mask, attention = left_pad_sequences([short, long])
    assert not attention[0].all() and attention[1].all()
    assert torch.equal(im_mask[0, -short[1].shape[1]:], short[1][0])
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    last = dict(num_logits_to_keep=1)
    with torch.no_grad():
        alone = model(inputs_embeds=short[0], im_mask=short[1],
                      **last).logits[0, -1]
        padded = model(inputs_embeds=embeds, im_mask=im_mask,
                       attention_mask=attention, position_ids=positions,
                       **last).logits[0, -1]
        shifted = model(inputs_embeds=embeds, im_mask=im_mask,
                        attention_mask=attention, **last).logits[0, -1]
        unmasked = model(inputs_embeds=embeds, im_mask=im_mask,
                         position_ids=positions, **last).logits[0, -1]
    assert torch.allclose(padded, alone, atol=1e-4, rtol=1e-4)
    assert torch.allclose(shifted, alone, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(unmasked, alone, atol=1e-4, rtol=1e-4)


def test_decode_reply_cuts_at_the_first_stop(chartmoe):
    from xtuner_chartmoe.families.ixc2.generation import decode_reply
    tokenizer = chartmoe[1]
    ids = tokenizer('Yes 12', add_special_tokens=False)['input_ids']
    stops = protocol.STOP_TOKEN_IDS
    assert decode_reply(tokenizer, ids + [92542, 2, 2], stops) == (
        'Yes 12', ids)
    assert decode_reply(tokenizer, ids + [2, 5, 6], stops).token_ids == ids
    assert decode_reply(tokenizer, [2, 2], stops) == ('', [])
    assert decode_reply(tokenizer, ids, stops).token_ids == ids


def test_chat_routing_of_the_moe_connector(chartmoe_chat, images):
    chat_model = chartmoe_chat
    assert chat_model.family == 'ixc2' and chat_model.is_moe
    assert chat_model.expert_names == ['general', 'table', 'json', 'code']
    tokens, routing = chat_model.encode_images(images)
    assert tokens.shape == (3, IMAGE_TOKENS, 64)
    assert routing.experts.shape == (3, IMAGE_TOKENS, 2)
    assert routing.weights.shape == (3, IMAGE_TOKENS, 2)
    assert routing.probs.shape == routing.logits.shape == (3, IMAGE_TOKENS, 4)
    assert torch.equal(tokens, encode_images(chat_model.model, images))
    replies, answered = chat_model.answer(images[:2], QUESTIONS[:2],
                                          max_new_tokens=2,
                                          return_routing=True)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    assert torch.equal(answered.experts, routing.experts[:2])
    for index in range(3):
        counts = chat_model.top1_counts(routing, index)
        assert list(counts) == chat_model.expert_names
        assert sum(counts.values()) == IMAGE_TOKENS
    assert chat_model.answer([], [], return_routing=True) == ([], None)
    assert chat_model.connector is chat_model.model.vision_proj
    chat_model.force_expert(1)
    try:
        _, forced = chat_model.encode_images(images[:1])
        assert chat_model.top1_counts(forced) == {
            'general': 0, 'table': IMAGE_TOKENS, 'json': 0, 'code': 0}
    finally:
        chat_model.force_expert(None)
    assert torch.equal(chat_model.encode_images(images)[1].experts,
                       routing.experts)
    with pytest.raises(ValueError, match='2 images for 1 questions'):
        chat_model.answer(images[:2], QUESTIONS[:1])


def test_chat_dense_ixc2_by_repo_id(standins, images):
    from xtuner_chartmoe.families.ixc2 import IXC2Chat
    chat_model = IXC2Chat.from_pretrained(IXC2_REPO, device='cpu',
                                          cache_dir=standins['hf_cache'])
    assert chat_model.dtype == torch.float32 and not chat_model.is_moe
    assert chat_model.expert_names == [] and chat_model.report.folder == \
        standins[IXC2_REPO]
    tokens, routing = chat_model.encode_images(images[:2])
    assert tokens.shape == (2, IMAGE_TOKENS, 64) and routing is None
    replies, routing = chat_model.answer(images[:2], QUESTIONS[:2],
                                         max_new_tokens=3, return_routing=True)
    assert routing is None and chat_model.top1_counts(routing) == {}
    with pytest.raises(ValueError, match='needs a MoE connector'):
        chat_model.force_expert(0)
    assert replies == [chat_model.answer([i], [q], max_new_tokens=3)[0]
                       for i, q in zip(images[:2], QUESTIONS[:2])]


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16', torch.bfloat16])
def test_chat_dtypes_on_cpu(standins, images, dtype):
    from xtuner_chartmoe.families.ixc2 import IXC2Chat
    chat_model = IXC2Chat.from_pretrained(CHARTMOE_REPO, device='cpu',
                                          dtype=dtype,
                                          cache_dir=standins['hf_cache'])
    expected = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    assert chat_model.dtype == expected
    assert chat_model.report.dtype == str(expected)[6:]
    tokens, routing = chat_model.encode_images(images[:1])
    assert tokens.dtype == expected and torch.isfinite(tokens).all()
    assert routing.probs.dtype == torch.float32
    replies = chat_model.answer(images[:2], QUESTIONS[:2], max_new_tokens=2)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)


def test_chat_dtype_defaults_and_names():
    from xtuner_chartmoe.families.ixc2.chat import _dtype
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    assert _dtype(None, cpu) == torch.float32
    assert _dtype(None, cuda) == torch.float16
    assert _dtype('float16', cpu) == torch.float16
    assert _dtype('torch.bfloat16', cpu) == torch.bfloat16
    assert _dtype('auto', cpu) == 'auto'
    with pytest.raises(ValueError, match='int8'):
        _dtype('int8', cpu)


def test_chat_unreadable_image_is_named(tmp_path, chartmoe_chat, images):
    bad = tmp_path / 'broken_chart.png'
    bad.write_bytes(b'not a png')
    with pytest.raises(ImageLoadError, match='broken_chart.png'):
        chartmoe_chat.answer([images[0], str(bad)], QUESTIONS[:2])
    with pytest.raises(ImageLoadError, match='missing.png'):
        chartmoe_chat.encode_images([str(tmp_path / 'missing.png')])


def test_is_ixc2_source(tmp_path, standins):
    from xtuner_chartmoe.families.ixc2 import is_ixc2_source
    from xtuner_chartmoe.families.ixc2.checkpoint import RELEASED_REPOS
    assert set(RELEASED_REPOS) == set(RELEASES)
    cache = standins['hf_cache']
    for repo in RELEASES:
        assert is_ixc2_source(standins[repo])  # the snapshot folders
        assert is_ixc2_source(repo, cache_dir=cache)
    assert not is_ixc2_source('nobody/nothing', cache_dir=cache)
    assert not is_ixc2_source(CHARTMOE_REPO, cache_dir=str(tmp_path))
    assert not is_ixc2_source(str(tmp_path / 'absent'))
    # a ChartMoE-style config.json without the architectures list
    ixc2_like = tmp_path / 'ixc2_like'
    ixc2_like.mkdir()
    shutil.copy(osp.join(standins[CHARTMOE_REPO], 'config.json'), ixc2_like)
    _edit_json(ixc2_like / 'config.json', architectures=None)
    assert is_ixc2_source(str(ixc2_like))
    # LLaVA: an HF llava folder, an XTuner ChartMoE release, an InternLM2 LLM
    def write(path, **values):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))

    llava, release = tmp_path / 'llava', tmp_path / 'release'
    write(llava / 'config.json', model_type='llava',
          architectures=['LlavaForConditionalGeneration'])
    write(release / 'chartmoe.json', visual_select_layer=-2)
    write(release / 'projector' / 'config.json',
          model_type='chartmoe_moe_projector', num_experts=4)
    write(release / 'llm' / 'config.json', model_type='internlm2',
          architectures=['InternLM2ForCausalLM'])
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'config.json').write_text('{not json')
    for folder in (llava, release, release / 'llm', broken):
        assert not is_ixc2_source(str(folder)), folder
