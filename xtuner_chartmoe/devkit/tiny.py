"""The tiny offline default: everything the tiny configs read, built locally.

``build_tiny_default(out_dir)`` writes, deterministically from ``seed``::

    data/              rendered charts and records (``dataset.synthesize``)
    tokenizer/         byte-level BPE trained on the data's texts
    llm/               Llama-style causal LM (random init) + tokenizer
    clip/              CLIP vision tower (random init) + image processor
    general_projector/ dense XTuner projector (the "general" expert)
"""
import json
import os.path as osp

import torch

from xtuner_chartmoe.prompts import ALIGN_PROMPTS, POT_PROMPT, SHORT_ANSWER_PROMPT
from xtuner_chartmoe.dataset.synthesize import RECORD_FILES, synthesize

SPECIAL_TOKENS = ['<unk>', '<s>', '</s>', '<pad>', '<|im_start|>',
                  '<|im_end|>']
TINY_SIZES = dict(
    vocab_size=3000,
    llm_hidden=128, llm_layers=2, llm_heads=4, llm_intermediate=352,
    vit_hidden=64, vit_layers=3, vit_heads=2, vit_intermediate=128,
    image_size=112, patch_size=14)


def tokenizer_texts(data_dir):
    """Every text the LLM will see in ``data_dir``'s records, plus the
    prompts and the chat template's words."""
    yield from ALIGN_PROMPTS.values()
    yield SHORT_ANSWER_PROMPT
    yield POT_PROMPT
    yield 'system user assistant\n'
    for kind, name in RECORD_FILES.items():
        with open(osp.join(data_dir, name)) as f:
            for record in json.load(f):
                if kind == 'chartqa':
                    yield from (record['query'], record['label'],
                                record['pot'])
                elif kind == 'knowledge':
                    yield from (record['question'], record['answer'])
                else:
                    for turn in record['conversations']:
                        yield turn['value'].replace('<ImageHere>', '')


def train_bpe(texts, special_tokens, vocab_size):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts``;
    ``special_tokens`` take the first ids, in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token=special_tokens[0]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def train_tokenizer(data_dir, save_dir, vocab_size):
    """Train a byte-level BPE on the data; save a PreTrainedTokenizerFast."""
    from transformers import PreTrainedTokenizerFast
    tok = train_bpe(tokenizer_texts(data_dir), SPECIAL_TOKENS, vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token='<s>', eos_token='</s>',
        unk_token='<unk>', pad_token='<pad>',
        additional_special_tokens=['<|im_start|>', '<|im_end|>'])
    tokenizer.save_pretrained(save_dir)
    return tokenizer


def build_tiny_llm(tokenizer, save_dir, sizes):
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=sizes['llm_hidden'],
        intermediate_size=sizes['llm_intermediate'],
        num_hidden_layers=sizes['llm_layers'],
        num_attention_heads=sizes['llm_heads'],
        num_key_value_heads=sizes['llm_heads'], max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, torch_dtype='float32')
    LlamaForCausalLM(config).save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)


def build_tiny_clip(save_dir, sizes):
    from transformers import (CLIPImageProcessor, CLIPVisionConfig,
                              CLIPVisionModel)
    config = CLIPVisionConfig(
        hidden_size=sizes['vit_hidden'],
        intermediate_size=sizes['vit_intermediate'],
        num_hidden_layers=sizes['vit_layers'],
        num_attention_heads=sizes['vit_heads'], image_size=sizes['image_size'],
        patch_size=sizes['patch_size'], torch_dtype='float32')
    CLIPVisionModel(config).save_pretrained(save_dir)
    size = sizes['image_size']
    CLIPImageProcessor(size={'shortest_edge': size},
                       crop_size={'height': size, 'width': size}
                       ).save_pretrained(save_dir)


def build_general_projector(save_dir, sizes):
    from xtuner.model.modules import ProjectorConfig, ProjectorModel
    ProjectorModel(ProjectorConfig(
        visual_hidden_size=sizes['vit_hidden'],
        llm_hidden_size=sizes['llm_hidden'], depth=2)).save_pretrained(save_dir)


def build_tiny_default(out_dir, seed=0, num_charts=48, num_workers=2,
                       progress=True):
    """Build the tiny default into ``out_dir``; returns the artefact paths."""
    paths = {name: osp.join(out_dir, name) for name in (
        'data', 'tokenizer', 'llm', 'clip', 'general_projector')}
    stats = synthesize(paths['data'], num_charts, seed=seed,
                       num_workers=num_workers, progress=progress)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(paths['data'], paths['tokenizer'],
                                TINY_SIZES['vocab_size'])
    build_tiny_llm(tokenizer, paths['llm'], TINY_SIZES)
    build_tiny_clip(paths['clip'], TINY_SIZES)
    build_general_projector(paths['general_projector'], TINY_SIZES)
    paths.update(stats['files'])
    return paths
