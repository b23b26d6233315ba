"""Real-architecture stand-ins, built offline, for running the real configs.

The real-size configs name ``internlm/internlm2-chat-7b`` and
``openai/clip-vit-large-patch14-336`` on the Hugging Face hub and relative
data paths (``./data/...``, ``./pretrained/...``). :func:`build_standins`
writes a folder in which they run unchanged:

- ``hf_cache/``: a Hugging Face hub cache holding both repositories with the
  hub configurations' values (widths, heads, vocabulary, rope, image size,
  InternLM2's remote code as XTuner ships it) and random weights, the depth
  cut (``llm_layers`` / ``vision_layers``); the LLM in bf16 like the hub
  checkpoint; a tokenizer carrying InternLM2's chat tokens at their ids
  (``<|im_start|>`` 92543, ``<|im_end|>`` 92542, ...), a byte-level BPE
  trained on the data and padded to the 92544-token vocabulary;
- ``data/``: the ChartMoE-Align, MMC-Instruct, ChartQA (train, test), PoT
  and ChartGemma files the configs read, from charts rendered here;
- ``pretrained/llava-internlm2-7b-pretrain/iter_2181.pth``: a general
  projector (1024 -> 4096) in XTuner's pretrain checkpoint layout.

The one override mechanism is the environment of the run plus
``--cfg-options``: run from that folder with ``HF_HUB_CACHE=<folder>/hf_cache
HF_HUB_OFFLINE=1`` (:func:`standin_env`), and on a CPU add the options of
:func:`cpu_cfg_options` (fp32 LLM, gloo, batch 1, a few samples per data
set, short generations of the EvaluateChatHook) and ``--deepspeed
deepspeed_zero2`` (the real configs' AMP optimizer wrapper needs a GPU).
``tools/standin.py`` does both; the configs are never copied.
"""
import hashlib
import json
import os
import os.path as osp
import shutil

import torch

from xtuner_chartmoe.dataset.synthesize import synthesize
from xtuner_chartmoe.fileio import atomic_write_json
from xtuner_chartmoe.devkit.tiny import tokenizer_texts, train_bpe

LLM_REPO = 'internlm/internlm2-chat-7b'
VISION_REPO = 'openai/clip-vit-large-patch14-336'
PRETRAIN_PROJECTOR = 'pretrained/llava-internlm2-7b-pretrain/iter_2181.pth'
EVALUATION_IMAGE = 'data/ChartQA/train/png/00006834003065.png'

# The hub configuration of internlm/internlm2-chat-7b.
INTERNLM2_CHAT_7B = dict(
    vocab_size=92544, hidden_size=4096, intermediate_size=14336,
    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
    hidden_act='silu', max_position_embeddings=32768, rms_norm_eps=1e-5,
    rope_theta=1000000, rope_scaling={'type': 'dynamic', 'factor': 2.0},
    bias=False, tie_word_embeddings=False, initializer_range=0.02,
    bos_token_id=1, eos_token_id=2, pad_token_id=2, torch_dtype='bfloat16',
    attn_implementation='eager')
# Its tokenizer's special tokens and their ids.
INTERNLM2_SPECIAL_TOKENS = {
    '<unk>': 0, '<s>': 1, '</s>': 2, '<|plugin|>': 92538,
    '<|interpreter|>': 92539, '<|action_end|>': 92540,
    '<|action_start|>': 92541, '<|im_end|>': 92542, '<|im_start|>': 92543}
# The hub configuration of openai/clip-vit-large-patch14-336 (a CLIPModel).
CLIP_VIT_L_14_336 = dict(
    projection_dim=768,
    vision_config=dict(hidden_size=1024, intermediate_size=4096,
                       num_hidden_layers=24, num_attention_heads=16,
                       image_size=336, patch_size=14, hidden_act='quick_gelu',
                       projection_dim=768),
    text_config=dict(hidden_size=768, intermediate_size=3072,
                     num_hidden_layers=12, num_attention_heads=12,
                     max_position_embeddings=77, vocab_size=49408,
                     hidden_act='quick_gelu', projection_dim=768))
CLIP_IMAGE_PROCESSOR = dict(
    size={'shortest_edge': 336}, crop_size={'height': 336, 'width': 336},
    image_mean=[0.48145466, 0.4578275, 0.40821073],
    image_std=[0.26862954, 0.26130258, 0.27577711], resample=3)
SNAPSHOT = hashlib.sha1(b'xtuner-chartmoe stand-in').hexdigest()


def internlm2_config(**overrides):
    """InternLM2-chat-7B's configuration (XTuner's copy of the remote
    code), with ``overrides`` (e.g. ``num_hidden_layers=2``)."""
    from xtuner._lite.modelings.internlm2 import InternLM2Config
    return InternLM2Config(**{**INTERNLM2_CHAT_7B, **overrides})


def clip_config(vision_layers=None, text_layers=2):
    """CLIP-ViT-L/14-336's configuration, depths cut where given."""
    from transformers import CLIPConfig
    vision = dict(CLIP_VIT_L_14_336['vision_config'])
    text = dict(CLIP_VIT_L_14_336['text_config'])
    if vision_layers:
        vision['num_hidden_layers'] = vision_layers
    if text_layers:
        text['num_hidden_layers'] = text_layers
    return CLIPConfig(text_config=text, vision_config=vision,
                      projection_dim=CLIP_VIT_L_14_336['projection_dim'])


def build_internlm2_tokenizer(texts, save_dir, bpe_size=4000):
    """A fast tokenizer with InternLM2's special tokens at their ids and its
    92544-token vocabulary: a byte-level BPE trained on ``texts``, padded
    with unreachable ``<|unused_i|>`` entries; adds ``<s>`` like
    InternLM2's."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast
    base = [t for t, i in sorted(INTERNLM2_SPECIAL_TOKENS.items(),
                                 key=lambda item: item[1]) if i < 3]
    chat = [t for t in INTERNLM2_SPECIAL_TOKENS if t not in base]
    spec = json.loads(train_bpe(texts, base, bpe_size).to_str())
    vocab = spec['model']['vocab']
    for i in range(len(vocab), INTERNLM2_SPECIAL_TOKENS[chat[0]]):
        vocab[f'<|unused_{i}|>'] = i
    spec['added_tokens'] += [{
        'id': INTERNLM2_SPECIAL_TOKENS[t], 'content': t, 'single_word': False,
        'lstrip': False, 'rstrip': False, 'normalized': False, 'special': True
    } for t in chat]
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(
        single='<s> $A', pair='<s> $A <s> $B', special_tokens=[('<s>', 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token='<s>', eos_token='</s>',
        unk_token='<unk>', pad_token='</s>', additional_special_tokens=chat)
    if len(tokenizer) != INTERNLM2_CHAT_7B['vocab_size'] or any(
            tokenizer.convert_tokens_to_ids(t) != i
            for t, i in INTERNLM2_SPECIAL_TOKENS.items()):
        raise RuntimeError('stand-in tokenizer ids differ from InternLM2\'s')
    tokenizer.save_pretrained(save_dir)
    return tokenizer


def random_internlm2(dtype=torch.bfloat16, **overrides):
    """InternLM2ForCausalLM (XTuner's copy of the remote code) with
    InternLM2-chat-7B's configuration (``overrides`` applied: the depth cut,
    ...), random init (seed 0), in memory; the stand-ins and the SFT
    benchmark build it here."""
    from xtuner._lite.modelings.internlm2 import InternLM2ForCausalLM
    torch.manual_seed(0)
    return InternLM2ForCausalLM._from_config(internlm2_config(**overrides),
                                             torch_dtype=dtype)


def build_internlm2_standin(save_dir, tokenizer, **overrides):
    """:func:`random_internlm2` in bf16, saved with its code next to the
    weights (``auto_map``) and ``tokenizer``."""
    model = random_internlm2(**overrides)
    model.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    return model


def random_clip(vision_layers=None, text_layers=2):
    """A CLIPModel with CLIP-ViT-L/14-336's shape, random init (seed 0), in
    memory."""
    from transformers import CLIPModel
    torch.manual_seed(0)
    return CLIPModel(clip_config(vision_layers, text_layers))


def build_clip_standin(save_dir, vision_layers=None, text_layers=2):
    """:func:`random_clip` saved with its image processor."""
    from transformers import CLIPImageProcessor
    random_clip(vision_layers, text_layers).save_pretrained(save_dir)
    CLIPImageProcessor(**CLIP_IMAGE_PROCESSOR).save_pretrained(save_dir)


def add_to_hub_cache(cache_dir, repo_id, folder):
    """Move ``folder`` into ``cache_dir`` as the snapshot of ``repo_id``
    that the hub client resolves offline."""
    repo = osp.join(cache_dir, 'models--' + repo_id.replace('/', '--'))
    snapshot = osp.join(repo, 'snapshots', SNAPSHOT)
    shutil.rmtree(repo, ignore_errors=True)
    os.makedirs(osp.dirname(snapshot))
    shutil.move(folder, snapshot)
    os.makedirs(osp.join(repo, 'refs'))
    with open(osp.join(repo, 'refs', 'main'), 'w') as f:
        f.write(SNAPSHOT)
    return snapshot


def _copy_images(entries, source_root, target_dir, key):
    os.makedirs(target_dir, exist_ok=True)
    for entry in entries:
        name = osp.basename(entry[key])
        shutil.copyfile(osp.join(source_root, entry[key]),
                        osp.join(target_dir, name))
        entry[key] = name
    return entries


def write_standin_data(root, num_charts=8, seed=0):
    """The data files the real configs read, under ``root/data``."""
    align = osp.join(root, 'data', 'chartmoe_align')
    synthesize(align, num_charts, seed=seed, num_workers=1, progress=False)
    with open(osp.join(align, 'sft_chartqa.json')) as f:
        qa = json.load(f)
    chartqa = osp.join(root, 'data', 'ChartQA')
    train = _copy_images([dict(e) for e in qa], align,
                         osp.join(chartqa, 'train', 'png'), 'imgname')
    short = [{k: e[k] for k in ('imgname', 'query', 'label')} for e in train]
    half = len(short) // 2
    atomic_write_json(osp.join(chartqa, 'train', 'train_human.json'), short[:half])
    atomic_write_json(osp.join(chartqa, 'train', 'train_augmented.json'),
                short[half:])
    atomic_write_json(osp.join(root, 'data', 'chartmoe_sft',
                         'chartqa_train_pot.json'), train)
    shutil.copyfile(osp.join(chartqa, 'train', 'png', train[0]['imgname']),
                    osp.join(root, EVALUATION_IMAGE))
    gemma = _copy_images(
        [{'image': e['imgname'], 'input': e['query'], 'output': e['label']}
         for e in qa], align, osp.join(root, 'data', 'ChartGemma', 'images'),
        'image')
    atomic_write_json(osp.join(root, 'data', 'ChartGemma', 'chartgemma.json'), gemma)
    with open(osp.join(align, 'knowledge_mmc.json')) as f:
        knowledge = json.load(f)
    mmc = osp.join(root, 'data', 'MMC', 'MMC-Instruction')
    for part in ('arxiv', 'non-arxiv'):  # MMC-Instruct's jsonl + images
        records = _copy_images([dict(r) for r in knowledge], align, osp.join(
            mmc, f'mmc_instruction_{part}_images'), 'image_id')
        with open(osp.join(mmc, f'mmc_instruction_{part}_text.jsonl'),
                  'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in records)
    for split in ('human', 'augmented'):
        with open(osp.join(align, 'test', f'test_{split}.json')) as f:
            test = _copy_images(json.load(f), align,
                                osp.join(chartqa, 'test', 'png'), 'imgname')
        atomic_write_json(osp.join(chartqa, 'test', f'test_{split}.json'), test)
    return align


def write_pretrain_projector(root, visual_hidden=1024, llm_hidden=4096):
    """XTuner's LLaVA pretrain checkpoint layout: ``{'state_dict':
    {'projector.model.{0,2}.*'}}`` (random weights)."""
    from xtuner.model.modules import ProjectorConfig, ProjectorModel
    torch.manual_seed(1)
    projector = ProjectorModel(ProjectorConfig(
        visual_hidden_size=visual_hidden, llm_hidden_size=llm_hidden, depth=2))
    path = osp.join(root, PRETRAIN_PROJECTOR)
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': {f'projector.{k}': v for k, v in
                               projector.state_dict().items()}}, path)
    return path


def build_standins(out_dir, llm_layers=2, vision_layers=2, num_charts=8,
                   seed=0, **llm_overrides):
    """Write the stand-in folder (see the module docstring); returns its
    paths. ``llm_overrides`` change more than the depth (tests use a narrow
    InternLM2 for speed; the real width is the default)."""
    out_dir = osp.abspath(out_dir)
    cache = osp.join(out_dir, 'hf_cache')
    align = write_standin_data(out_dir, num_charts, seed)
    staging = osp.join(out_dir, 'staging')
    shutil.rmtree(staging, ignore_errors=True)
    texts = list(tokenizer_texts(align))
    tokenizer = build_internlm2_tokenizer(
        texts, osp.join(staging, 'tokenizer'))
    llm = build_internlm2_standin(osp.join(staging, 'llm'), tokenizer,
                                  num_hidden_layers=llm_layers,
                                  **llm_overrides)
    build_clip_standin(osp.join(staging, 'clip'), vision_layers)
    paths = {
        'root': out_dir, 'hf_cache': cache,
        'llm': add_to_hub_cache(cache, LLM_REPO, osp.join(staging, 'llm')),
        'clip': add_to_hub_cache(cache, VISION_REPO,
                                 osp.join(staging, 'clip')),
        'general_projector': write_pretrain_projector(
            out_dir, clip_config().vision_config.hidden_size,
            llm.config.hidden_size),
    }
    shutil.rmtree(staging)
    return paths


def standin_env(root, environ=None):
    """The environment in which the hub ids resolve to the stand-ins."""
    env = dict(os.environ if environ is None else environ)
    env.update(HF_HUB_CACHE=osp.join(osp.abspath(root), 'hf_cache'),
               HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    return env


def cpu_cfg_options(cfg, samples_per_dataset=2, max_iters=None, nproc=1,
                    max_new_tokens=8):
    """``--cfg-options`` that run a real-size config on a CPU: fp32 LLM,
    gloo, no activation checkpointing (memory is no issue at reduced
    depth), batch 1 without accumulation or workers (the length-grouped
    sampler's mega-batch shrunk to match), ``samples_per_dataset`` records
    of each data set (single processes to map them), at most ``max_iters``
    iterations, a warmup of at least one iteration, every iteration logged,
    short EvaluateChatHook generations. Returns a list of ``key=value`` strings."""
    options = ['model.llm.torch_dtype=float32', 'env_cfg.dist_cfg.backend=gloo',
               'model.use_activation_checkpointing=False',
               'train_dataloader.batch_size=1',
               'train_dataloader.num_workers=0',
               'train_dataloader.pin_memory=False',
               'default_hooks.logger.interval=1']
    if 'accumulative_counts' in cfg.optim_wrapper:
        options.append('optim_wrapper.accumulative_counts=1')
    if 'per_device_batch_size' in cfg.train_dataloader.get('sampler', {}):
        options.append('train_dataloader.sampler.per_device_batch_size=1')
    dataset = cfg.train_dataloader.dataset
    parts = ([f'train_dataloader.dataset.datasets.{i}'
              for i in range(len(dataset.datasets))]
             if 'datasets' in dataset else ['train_dataloader.dataset'])
    for part in parts:
        options += [f'{part}.map_num_proc=1',
                    f'{part}.max_dataset_length={samples_per_dataset}']
    if max_iters:
        options += ['train_cfg.max_epochs=None',
                    f'train_cfg.max_iters={max_iters}']
    iters_per_epoch = -(-samples_per_dataset * len(parts) // nproc)
    for i, scheduler in enumerate(cfg.get('param_scheduler', [])):
        if not scheduler.get('convert_to_iter_based'):
            continue
        for key in ('begin', 'end'):
            if 0 < scheduler.get(key, 0) * iters_per_epoch < 1:
                options.append(
                    f'param_scheduler.{i}.{key}={1 / iters_per_epoch}')
    for i, hook in enumerate(cfg.get('custom_hooks', [])):
        if getattr(hook['type'], '__name__', hook['type']) == \
                'EvaluateChatHook':
            options.append(
                f'custom_hooks.{i}.max_new_tokens={max_new_tokens}')
    return options


def build_on_meta(cfg):
    """``cfg.model`` at full size on the meta device, reading no weights:
    InternLM2-chat-7B and CLIP-ViT-L/14-336 from their hub configurations
    (full depth), a MoE connector made in place of ``moe_projector``'s file,
    no projector or checkpoint loaded, no quantization (a QLoRA config then
    has its LoRA model). Everything else of the config (freezing, LoRA, CuMo
    upcycling) applies as written. For parameter counts."""
    from accelerate import init_empty_weights
    from transformers import CLIPVisionModel
    from xtuner._lite.modelings.internlm2 import InternLM2ForCausalLM
    from xtuner.registry import BUILDER
    model_cfg = dict(cfg.model)
    with init_empty_weights():
        model_cfg['llm'] = InternLM2ForCausalLM(internlm2_config())
        model_cfg['visual_encoder'] = CLIPVisionModel(
            clip_config().vision_config)
        if 'moe_projector' in model_cfg:
            model_cfg['moe_projector'] = dict(
                mode='random',
                visual_hidden_size=CLIP_VIT_L_14_336['vision_config'][
                    'hidden_size'],
                llm_hidden_size=INTERNLM2_CHAT_7B['hidden_size'])
        for key in ('projector_init', 'pretrained_pth'):
            model_cfg.pop(key, None)
        return BUILDER.build(model_cfg)


def parameter_counts(model):
    """``{'total', 'trainable', 'llm', 'visual_encoder', 'projector'}``
    numbers of parameters (LoRA adapters counted in ``llm``)."""
    counts = {'total': 0, 'trainable': 0}
    for name, param in model.named_parameters():
        part = name.split('.')[0]
        counts[part] = counts.get(part, 0) + param.numel()
        counts['total'] += param.numel()
        counts['trainable'] += param.numel() if param.requires_grad else 0
    return counts


def full_size_table(config_paths):
    """Markdown table of the full-size parameter counts of each config
    (built on the meta device), as in the README; package files such as
    ``__init__.py`` (a shell's ``*.py``) are skipped."""
    from mmengine.config import Config
    rows = ['| config | total | trainable | LLM (+LoRA) | vision | '
            'connector |', '|---|---:|---:|---:|---:|---:|']
    for path in config_paths:
        if osp.basename(path).startswith('_'):
            continue
        counts = parameter_counts(build_on_meta(Config.fromfile(path)))
        name = osp.splitext(osp.basename(path))[0]
        rows.append(f"| `{name}` | " + ' | '.join(
            f'{counts[k]:,}' for k in ('total', 'trainable', 'llm',
                                       'visual_encoder', 'projector')) + ' |')
    return '\n'.join(rows)
