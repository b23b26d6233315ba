"""Training data as users download it: offline replicas, written here in each
format's exact schema, of ChartQA's GitHub JSON + PNG folder,
``HuggingFaceM4/ChartQA`` and ``lmms-lab/ChartQA`` (hub parquet, the
``datasets`` Image feature) and ``ahmed-masry/ChartGemma`` (hub parquet,
the image as a ``binary`` column), read by the map-fns and
``ChartLLaVADataset`` with no extraction; and the real SFT config variant
that reads the hub folders, built on them."""
import io
import json
import os.path as osp

import datasets
import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from conftest import REPO
from xtuner_chartmoe.dataset import (ChartLLaVADataset, chartgemma_map_fn,
                                     chartqa_map_fn)

QUESTIONS = ['How many bars?', 'Which is the largest?', 'What is the sum?',
             'Is red higher than blue?', 'What is the lowest value?']
ANSWERS = ['4', 'Canada', '12.5', 'Yes', '0.3']
HUB_CONFIG = osp.join(
    REPO, 'configs', 'chartmoe', 'internlm2_chat_7b_clip_vit_large_p14_336',
    'chartmoe_internlm2_chat_7b_clip_vit_large_p14_336_lora_e1_gpu8_sft_hub.py')


def chart_png(seed):
    """A small, distinct RGB image as PNG bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 56, 3))
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, 'PNG')
    return out.getvalue()


def write_parquet(path, columns, image_feature=True):
    """``columns`` as a hub parquet shard (``datasets``' own writer), the
    ``image`` column as the Image feature or left as raw bytes."""
    dataset = datasets.Dataset.from_dict(columns)
    if image_feature:
        dataset = dataset.cast_column('image', datasets.Image())
    if 'human_or_machine' in columns:
        dataset = dataset.cast_column('human_or_machine', datasets.ClassLabel(
            names=['human', 'machine']))
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(path))


def m4_columns(seeds):
    """``HuggingFaceM4/ChartQA``: image, query, label (a list),
    human_or_machine."""
    return {'image': [{'bytes': chart_png(s), 'path': None} for s in seeds],
            'query': [QUESTIONS[s % 5] for s in seeds],
            'label': [[ANSWERS[s % 5]] for s in seeds],
            'human_or_machine': [s % 2 for s in seeds]}


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """Keep ``datasets``' Arrow copies of the parquet files in the test's
    folder."""
    monkeypatch.setattr(datasets.config, 'HF_DATASETS_CACHE',
                        str(tmp_path / 'datasets_cache'))


@pytest.fixture(scope='module')
def replicas(tmp_path_factory):
    """The downloaded layouts: ``m4/data/{train (2 shards),val,test}``,
    ``lmms/data/test``, ``gemma/data/train``, ``github/train`` (JSON +
    ``png/``), all with the charts of seeds 0-4 (val/test: 5-7)."""
    root = tmp_path_factory.mktemp('hub')
    write_parquet(root / 'm4/data/train-00000-of-00002.parquet',
                  m4_columns([0, 1, 2]))
    write_parquet(root / 'm4/data/train-00001-of-00002.parquet',
                  m4_columns([3, 4]))
    write_parquet(root / 'm4/data/val-00000-of-00001.parquet',
                  m4_columns([5, 6]))
    write_parquet(root / 'm4/data/test-00000-of-00001.parquet',
                  m4_columns([7]))
    write_parquet(root / 'lmms/data/test-00000-of-00001.parquet', {
        'type': ['human_test', 'augmented_test'],
        'question': QUESTIONS[:2], 'answer': ANSWERS[:2],
        'image': [{'bytes': chart_png(s), 'path': None} for s in (0, 1)]})
    write_parquet(root / 'gemma/data/train-00000-of-00001.parquet', {
        'image': [chart_png(s) for s in range(5)],
        'input': [f'program of thought: {q}' for q in QUESTIONS],
        'output': [f'print({a!r})' for a in ANSWERS]}, image_feature=False)
    png = root / 'github/train/png'
    png.mkdir(parents=True)
    for seed in range(5):
        (png / f'{seed}.png').write_bytes(chart_png(seed))
    (root / 'github/train/train_human.json').write_text(json.dumps([
        {'imgname': f'{s}.png', 'query': QUESTIONS[s], 'label': ANSWERS[s]}
        for s in range(5)]))
    return root


@pytest.fixture(scope='module')
def tokenizer():
    from transformers import PreTrainedTokenizerFast
    from xtuner_chartmoe.devkit.tiny import SPECIAL_TOKENS, train_bpe
    return PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(QUESTIONS + ANSWERS, SPECIAL_TOKENS, 300),
        bos_token='<s>', eos_token='</s>', unk_token='<unk>',
        pad_token='<pad>')


def build(tokenizer, data_path, **kwargs):
    from transformers import CLIPImageProcessor
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.utils import PROMPT_TEMPLATE
    options = dict(
        image_folder=None, data_path=data_path, tokenizer=tokenizer,
        image_processor=CLIPImageProcessor(
            size={'shortest_edge': 28},
            crop_size={'height': 28, 'width': 28}),
        dataset_map_fn=chartqa_map_fn, template_map_fn=template_map_fn_factory(
            PROMPT_TEMPLATE.internlm2_chat), max_length=256, map_num_proc=1)
    options.update(kwargs)
    return ChartLLaVADataset(**options)


def test_map_fns_read_every_chartqa_format():
    github = chartqa_map_fn({'imgname': '0.png', 'query': 'Q?', 'label': '4'})
    m4 = chartqa_map_fn({'image': {'bytes': b'png', 'path': None},
                         'query': 'Q?', 'label': ['4', 'four'],
                         'human_or_machine': 1})
    lmms = chartqa_map_fn({'type': 'human_test', 'question': 'Q?',
                           'answer': '4', 'image': b'png'})
    assert github['conversation'] == m4['conversation'] == \
        lmms['conversation']
    assert m4['conversation'][0]['output'] == '4'
    assert (github['image'], m4['image'], lmms['image']) == (
        '0.png', {'bytes': b'png', 'path': None}, b'png')
    with pytest.raises(ValueError, match=r"not a ChartQA record: fields "
                       r"\['image', 'input', 'output'\]; expected"):
        chartqa_map_fn({'image': b'png', 'input': 'Q', 'output': 'A'})


def test_embedded_images_equal_the_same_images_from_files(replicas,
                                                          tokenizer):
    hub = build(tokenizer, str(replicas / 'm4'), split='train')
    github = build(tokenizer, str(replicas / 'github/train/train_human.json'),
                   image_folder=str(replicas / 'github/train/png'))
    assert len(hub) == len(github) == 5  # both train shards, in order
    for index in range(5):
        a, b = hub[index], github[index]
        assert a['input_ids'] == b['input_ids'] and a['labels'] == b['labels']
        assert a['pixel_values'].shape == (3, 28, 28)
        assert torch.equal(a['pixel_values'], b['pixel_values'])
    # the tokenised text holds a reference to the row, not the image
    assert hub.text_data[4]['image'] == \
        f"{replicas / 'm4/data/train-00001-of-00002.parquet'}[1]"
    assert hub.text_data[4]['image_row'] == 4
    assert all(isinstance(v, (str, int, list, type(None)))
               for v in hub.text_data[4].values())
    assert hub.modality_length == [
        len(hub.text_data[i]['input_ids']) for i in range(5)]


def test_split_picked_from_the_shard_folder(replicas, tokenizer):
    assert len(build(tokenizer, str(replicas / 'm4'), split='val')) == 2
    assert len(build(tokenizer, str(replicas / 'm4'), split='test')) == 1
    with pytest.raises(FileNotFoundError, match=(
            r"m4: no parquet shard of split 'dev' \(found: test, train, "
            r"val\)")):
        build(tokenizer, str(replicas / 'm4'), split='dev')


def test_lmms_lab_chartqa_and_chartgemma_parquet(replicas, tokenizer):
    lmms = build(tokenizer, str(replicas / 'lmms'), split='test')
    gemma = build(tokenizer, str(replicas / 'gemma'),
                  dataset_map_fn=chartgemma_map_fn)
    m4 = build(tokenizer, str(replicas / 'm4'))
    assert len(lmms) == 2 and len(gemma) == 5
    for index in (0, 1):
        assert torch.equal(lmms[index]['pixel_values'],
                           m4[index]['pixel_values'])
        assert torch.equal(gemma[index]['pixel_values'],
                           m4[index]['pixel_values'])
    text = tokenizer.decode([i for i in gemma[0]['input_ids'] if i >= 0])
    assert 'program of thought: How many bars?' in text  # -200: the image


def test_bad_embedded_image_is_named_and_skipped(replicas, tokenizer,
                                                 tmp_path):
    columns = m4_columns([0, 1, 2])
    columns['image'][1] = {'bytes': b'\x89PNG not a chart', 'path': None}
    shard = tmp_path / 'bad/data/train-00000-of-00001.parquet'
    write_parquet(shard, columns)
    dataset = build(tokenizer, str(tmp_path / 'bad'))
    assert len(dataset) == 2
    assert torch.equal(dataset[1]['pixel_values'],
                       build(tokenizer, str(replicas / 'm4'))[2][
                           'pixel_values'])
    with pytest.raises(ValueError) as err:
        build(tokenizer, str(tmp_path / 'bad'), on_bad_record='error')
    message = str(err.value)
    assert message.startswith('1 bad record(s):')
    assert f'{shard}[1]: image unreadable: <embedded image> (' in message


def test_datasets_objects_as_data_path(replicas, tokenizer):
    """A ``datasets.Dataset`` (its Image feature decoding) and the
    ``DatasetDict`` of ``load_dataset``, as users hold them."""
    loaded = datasets.load_dataset('parquet', data_files={
        'train': sorted(map(str, (replicas / 'm4/data').glob('train-*'))),
        'val': str(replicas / 'm4/data/val-00000-of-00001.parquet')})
    assert isinstance(loaded['train'][0]['image'], Image.Image)
    from_dict = build(tokenizer, loaded)
    from_split = build(tokenizer, loaded['val'])
    files = build(tokenizer, str(replicas / 'm4'))
    assert len(from_dict) == 5 and len(from_split) == 2
    assert torch.equal(from_dict[3]['pixel_values'],
                       files[3]['pixel_values'])
    with pytest.raises(ValueError, match=r"no split 'test' in the "
                       r'DatasetDict \(splits: train, val\)'):
        build(tokenizer, loaded, split='test')


def test_hub_config_builds_and_trains_on_replicas(replicas, narrow_standins,
                                                  monkeypatch):
    """The hub SFT variant, its data paths at the replicas and its hub ids
    at the narrow InternLM2 / CLIP-L stand-ins: both data sets build from
    the parquet folders alone and a batch of each trains."""
    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.registry import BUILDER
    from xtuner_chartmoe.devkit.standin import LLM_REPO, VISION_REPO
    from xtuner_chartmoe.model import build_moe_projector
    monkeypatch.chdir(narrow_standins['root'])
    cfg = Config.fromfile(HUB_CONFIG)
    parts = cfg.train_dataloader.dataset.datasets
    assert [p.image_folder for p in parts] == [None, None]
    for part, path in zip(parts, ('m4', 'gemma')):
        part.update(data_path=str(replicas / path), map_num_proc=1)
    local = {LLM_REPO: narrow_standins['llm'],
             VISION_REPO: narrow_standins['clip']}
    for node in (cfg.model.llm, cfg.model.visual_encoder, cfg.tokenizer,
                 cfg.image_processor, *[p.tokenizer for p in parts],
                 *[p.image_processor for p in parts]):
        node.pretrained_model_name_or_path = local[
            node.pretrained_model_name_or_path]
    cfg.model.llm.torch_dtype = torch.float32
    cfg.model.use_activation_checkpointing = False
    build_moe_projector('upcycle', [narrow_standins['general_projector']]
                        ).save_pretrained(cfg.model.moe_projector.pretrained)
    model = BUILDER.build(cfg.model)
    dataset = BUILDER.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 10 and dataset[0]['pixel_values'].shape == (
        3, 336, 336)
    batch = default_collate_fn([dataset[0], dataset[len(dataset) - 1]])
    loss = model(batch['data'], mode='loss')['loss']
    loss.backward()
    assert torch.isfinite(loss)
    assert model.projector.gate.weight.grad is not None
