"""The tiny IXC2 default: a random InternLM-XComposer2 release and chart data
in ChartMoE-Data's format, built offline for the tiny IXC2 configs.

``build_tiny_ixc2(out_dir)`` writes, deterministically from ``seed``::

    ixc2/            a release folder laid out like
                     ``Coobiw/InternLM-XComposer2_Enhanced`` (IXC2,
                     arXiv 2401.16420): config.json, random weights under
                     the released keys (dense ``vision_proj``), IXC2's
                     tokenizer ids; narrow widths (:data:`TINY_IXC2`), 112-px
                     images (64 visual tokens)
    moe_connector/   ChartMoE's MoE connector (arXiv 2409.03277) upcycled
                     from ``ixc2/``'s ``vision_proj`` (4 experts, top-2), the
                     ``chartmoe build-moe`` folder layout; the tiny SFT's
                     default when no aligned experts are at hand
    data/            rendered charts (``charts/``, ``quads/``, the
                     synthesiser's files) and ChartMoE-Data's files:
                     chart2table.json, chart2json.json, chart2code.json,
                     chartqa.json (short and program-of-thought answers),
                     chartgemma.json (chart knowledge answers); records
                     ``{id, image: [path under data/], conversations:
                     [{from: user|assistant, value}]}``, ``<ImageHere>`` in
                     the user's text

``charts_from``: the ``data/`` folder of ``chartmoe build-tiny`` whose
rendered charts are reused (copied; only missing charts are rendered).
"""
import json
import os.path as osp
import shutil

import torch

from ..dataset.synthesize import synthesize
from ..fileio import atomic_write_json
from ..prompts import POT_PROMPT, SHORT_ANSWER_PROMPT
from ..families.ixc2.standin import (build_ixc2_tokenizer, ixc2_config,
                                     write_release)

# Narrow IXC2: real vocabulary (the chat tokens keep their ids), tiny widths.
TINY_IXC2 = dict(llm_layers=2, vision_layers=2, hidden_size=64,
                 intermediate_size=128, num_attention_heads=4,
                 num_key_value_heads=2, img_size=112, plora_r=8,
                 plora_alpha=8,
                 vision_config=dict(hidden_size=32, intermediate_size=64,
                                    num_attention_heads=2))
# ChartMoE-Data's file of each synthesised align record file.
ALIGN_FILES = {'align_table.json': 'chart2table.json',
               'align_json.json': 'chart2json.json',
               'align_code.json': 'chart2code.json'}
IMAGE_MARK = '<ImageHere>'


def _conversation(index, image, question, answer):
    return {'id': index, 'image': [image], 'conversations': [
        {'from': 'user', 'value': IMAGE_MARK + question},
        {'from': 'assistant', 'value': answer}]}


def write_chartmoe_data(data_dir):
    """ChartMoE-Data's five files from the synthesiser's records in
    ``data_dir``; returns ``{file name: number of records}``."""
    def read(name):
        with open(osp.join(data_dir, name)) as f:
            return json.load(f)

    files = {target: read(source) for source, target in ALIGN_FILES.items()}
    files['chartqa.json'] = [
        _conversation(f'chartqa_{mode}_{i:05d}', qa['imgname'],
                      prompt + qa['query'], answer)
        for mode, prompt, key in (('short', SHORT_ANSWER_PROMPT, 'label'),
                                  ('pot', POT_PROMPT, 'pot'))
        for i, qa in enumerate(read('sft_chartqa.json'))
        for answer in [qa[key]]]
    files['chartgemma.json'] = [
        _conversation(f'chartgemma_{i:05d}', r['image_id'], r['question'],
                      r['answer'])
        for i, r in enumerate(read('knowledge_mmc.json'))]
    for name, records in files.items():
        atomic_write_json(osp.join(data_dir, name), records)
    return {name: len(records) for name, records in files.items()}


def record_texts(data_dir):
    """The user and assistant texts of the ChartMoE-Data files."""
    for name in (*ALIGN_FILES.values(), 'chartqa.json', 'chartgemma.json'):
        with open(osp.join(data_dir, name)) as f:
            for record in json.load(f):
                for turn in record['conversations']:
                    yield turn['value'].replace(IMAGE_MARK, '')


def write_upcycled_connector(release_dir, save_dir, num_experts=4,
                             num_selected=2):
    """ChartMoE's MoE connector with the release's dense ``vision_proj``
    copied into every expert and a fresh router, saved like
    ``chartmoe build-moe`` does (weights + code)."""
    from ..families.ixc2.checkpoint import load_ixc2
    from ..families.ixc2.modeling_ixc2 import build_vision_proj
    base = load_ixc2(release_dir, torch_dtype=torch.float32,
                     tokenizer=False).model
    config = base.config
    config.num_experts, config.num_selected = num_experts, num_selected
    moe = build_vision_proj(config)
    dense = base.vision_proj.state_dict()
    for expert in moe.experts:
        expert.load_state_dict(dense)
    moe.save_pretrained(save_dir)
    return save_dir


def build_tiny_ixc2(out_dir, seed=0, num_charts=16, num_workers=2,
                    charts_from=None, progress=True):
    """Build the tiny IXC2 default into ``out_dir`` (module docstring);
    returns ``{name: path}`` of what it wrote."""
    paths = {name: osp.join(out_dir, name)
             for name in ('ixc2', 'moe_connector', 'data')}
    data = paths['data']
    if charts_from is not None:
        for sub in ('charts', 'quads'):
            shutil.copytree(osp.join(charts_from, sub), osp.join(data, sub),
                            dirs_exist_ok=True)
    synthesize(data, num_charts, seed=seed, num_workers=num_workers,
               progress=progress)
    counts = write_chartmoe_data(data)
    staging = osp.join(out_dir, 'tokenizer.staging')
    shutil.rmtree(staging, ignore_errors=True)
    build_ixc2_tokenizer(staging, texts=record_texts(data))
    torch.manual_seed(seed)
    config = ixc2_config(**TINY_IXC2)
    shutil.rmtree(paths['ixc2'], ignore_errors=True)
    write_release(paths['ixc2'], config, staging, seed, dtype=torch.float32)
    shutil.rmtree(staging)
    write_upcycled_connector(paths['ixc2'], paths['moe_connector'])
    paths.update({name: osp.join(data, name) for name in counts})
    return paths
