"""``pth_to_hf --save-format huggingface``: a transformers-native release.

:func:`export_huggingface` writes, from a trained ``ChartMoEModel``, a
folder in the LLaVA-HF layout that plain ``transformers`` loads::

    model = AutoModelForImageTextToText.from_pretrained(OUT,
                                                        trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(OUT, trust_remote_code=True)

- ``model.safetensors``: ``language_model.*`` (the LLM, LoRA merged the way
  XTuner's ``merge`` merges it: in fp16 unless ``fp32``),
  ``vision_tower.*`` (CLIP, CuMo's MoE MLPs included),
  ``multi_modal_projector.*`` (the MoE connector);
- ``config.json`` (``ChartMoEConfig``: text, vision and projector configs,
  the image token id) with ``auto_map``, and the model code: the files of
  ``hf_native_code/``, the connector's and the CLIP MoE's files, the LLM's
  own remote code if it has some, and ``text_model.py`` that builds the LLM;
- the tokenizer with an ``<image>`` token, CLIP's image processor and the
  processor (``processing_chartmoe.py``) with the chat template of the
  training prompt template;
- ``generation_config.json``: greedy, stopping at EOS and the template's
  stop words.
"""
import inspect
import json
import os
import os.path as osp
import shutil

from safetensors.torch import save_file

from xtuner_chartmoe.fileio import atomic_directory, atomic_write_json
from xtuner_chartmoe.model.chartmoe import SAVE_FORMATS
from xtuner_chartmoe.prompts import stop_token_ids

CODE_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'hf_native_code')
MODEL_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'model')
CONNECTOR_CODE = ('configuration_moe_projector.py', 'modeling_moe_projector.py',
                  'moe_block.py', 'routers.py', 'modeling_clip_moe.py')
IMAGE_TOKEN = '<image>'
BUILTIN_TEXT_MODEL = '''"""Builds the LLM of this release (a transformers model)."""
from transformers import AutoConfig, AutoModelForCausalLM


def text_config_from_dict(config):
    return AutoConfig.for_model(**config)


def build_text_model(config):
    return AutoModelForCausalLM.from_config(config)
'''
REMOTE_TEXT_MODEL = '''"""Builds the LLM of this release (its own remote code, copied here)."""
from .{config_module} import {config_class}
from .{model_module} import {model_class}


def text_config_from_dict(config):
    config = dict(config)
    config.pop('model_type', None)
    return {config_class}(**config)


def build_text_model(config):
    return {model_class}(config)
'''


def _literal(text):
    """``text`` as jinja output; ``{round}`` becomes the turn number."""
    return '{{ loop.index }}'.join(
        '{{ ' + json.dumps(part) + ' }}' for part in text.split('{round}'))


def chat_template(prompt_template):
    """A jinja chat template writing XTuner's ``prompt_template`` (SYSTEM,
    INSTRUCTION with ``{input}``, SUFFIX, SEP); an image item becomes
    ``<image>`` and a new line, as in training."""
    before, after = prompt_template['INSTRUCTION'].split('{input}')
    system = prompt_template.get('SYSTEM', '')
    suffix = prompt_template.get('SUFFIX', '') + prompt_template.get('SEP', '')
    content = (
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}{%- for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}{{ '" + IMAGE_TOKEN + "\\n' }}"
        "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
        '{%- endfor -%}{%- endif -%}')
    parts = ['{%- for message in messages -%}']
    if system:
        sys_before, sys_after = system.split('{system}')
        parts.append("{%- if message['role'] == 'system' -%}" +
                     _literal(sys_before) + content + _literal(sys_after))
        parts.append("{%- elif message['role'] == 'user' -%}")
    else:
        parts.append("{%- if message['role'] == 'user' -%}")
    parts.append(_literal(before) + content + _literal(after))
    parts.append("{%- elif message['role'] == 'assistant' -%}" + content +
                 _literal(suffix))
    parts.append('{%- endif -%}{%- endfor -%}')
    return ''.join(parts)


def _import_line(module, name):
    return f'from .{module} import {name}  # noqa: E402,F401\n'


def _write_text_model(llm, out_dir):
    """``text_model.py`` for the LLM class, and its remote code if any
    (imported directly by the files that load it, see modeling_chartmoe)."""
    cls = type(llm)
    if not cls.__module__.startswith('transformers.'):
        source_dir = osp.dirname(inspect.getfile(cls))
        for name in os.listdir(source_dir):
            if name.endswith('.py') and not name.startswith('__'):
                shutil.copyfile(osp.join(source_dir, name),
                                osp.join(out_dir, name))
        config_cls = type(llm.config)
        code = REMOTE_TEXT_MODEL.format(
            config_module=config_cls.__module__.rsplit('.', 1)[-1],
            config_class=config_cls.__name__,
            model_module=cls.__module__.rsplit('.', 1)[-1],
            model_class=cls.__name__)
        config_import = _import_line(
            config_cls.__module__.rsplit('.', 1)[-1], config_cls.__name__)
        pins = {'configuration_chartmoe.py': config_import,
                'modeling_chartmoe.py': config_import + _import_line(
                    cls.__module__.rsplit('.', 1)[-1], cls.__name__)}
        for name, lines in pins.items():
            with open(osp.join(out_dir, name), 'a') as f:
                f.write(lines)
    else:
        code = BUILTIN_TEXT_MODEL
    with open(osp.join(out_dir, 'text_model.py'), 'w') as f:
        f.write(code)


def _merged_llm(model, fp32):
    llm = model.llm
    if not fp32:
        llm.half()
    if model.use_llm_lora:
        llm = llm.merge_and_unload()
    llm.config.use_cache = True
    return llm


@SAVE_FORMATS.register_module(name='huggingface')
def export_huggingface(model, cfg, save_dir, fp32=False):
    """Write the transformers-native release of ``model`` (a trained
    ``ChartMoEModel`` with a MoE connector; ``cfg`` its training config)
    into ``save_dir`` (see the module docstring), atomically: a failure
    leaves ``save_dir`` as it was."""
    with atomic_directory(save_dir) as tmp:
        _write_release(model, cfg, tmp, fp32)
    return save_dir


def _write_release(model, cfg, save_dir, fp32):
    from transformers import GenerationConfig
    from xtuner.registry import BUILDER

    from xtuner_chartmoe.model.modeling_clip_moe import clip_moe_layers
    from xtuner_chartmoe.model.modeling_moe_projector import MoEProjectorModel
    if not isinstance(model.projector, MoEProjectorModel):
        raise NotImplementedError(
            'the transformers-native release is for a MoE connector; a '
            "dense projector converts with XTuner's own LLaVAModel")
    if model.use_visual_encoder_lora:
        raise NotImplementedError('a LoRA-tuned visual encoder is not '
                                  'supported in this format')
    from xtuner_chartmoe.release.hf_native_code.processing_chartmoe import (
        ChartMoEProcessor)
    llm = _merged_llm(model, fp32)
    vision, projector = model.visual_encoder, model.projector
    state = {f'vision_tower.{k}': v for k, v in vision.state_dict().items()}
    state.update({f'multi_modal_projector.{k}': v
                  for k, v in projector.state_dict().items()})
    state.update({f'language_model.{k}': v
                  for k, v in llm.state_dict().items()})
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()},
              osp.join(save_dir, 'model.safetensors'),
              metadata={'format': 'pt'})

    tokenizer = BUILDER.build(cfg.tokenizer)
    tokenizer.add_special_tokens({'additional_special_tokens': [IMAGE_TOKEN]},
                                 replace_additional_special_tokens=False)
    image_processor = BUILDER.build(cfg.image_processor)
    vision_config = vision.config
    num_image_tokens = (vision_config.image_size //
                        vision_config.patch_size)**2
    processor = ChartMoEProcessor(
        image_processor=image_processor, tokenizer=tokenizer,
        chat_template=chat_template(cfg.prompt_template),
        image_token=IMAGE_TOKEN, num_image_tokens=num_image_tokens)
    ChartMoEProcessor.register_for_auto_class('AutoProcessor')
    processor.save_pretrained(save_dir)

    config = {
        'architectures': ['ChartMoEForConditionalGeneration'],
        'model_type': 'chartmoe',
        'auto_map': {
            'AutoConfig': 'configuration_chartmoe.ChartMoEConfig',
            'AutoModelForImageTextToText':
            'modeling_chartmoe.ChartMoEForConditionalGeneration',
            'AutoModelForCausalLM':
            'modeling_chartmoe.ChartMoEForConditionalGeneration',
        },
        'text_config': llm.config.to_dict(),
        'vision_config': vision_config.to_dict(),
        'projector_config': projector.config.to_dict(),
        'image_token_index': tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        'visual_select_layer': model.visual_select_layer,
        'torch_dtype': 'float32',
        # the LLM ties (or not) its own embeddings, per its text_config
        'tie_word_embeddings': False,
        'moe_layers': {'connector': projector.config.num_experts,
                       'vision_tower': len(clip_moe_layers(vision))},
    }
    for sub in ('text_config', 'vision_config', 'projector_config'):
        config[sub].pop('auto_map', None)
        config[sub].pop('_name_or_path', None)
    atomic_write_json(osp.join(save_dir, 'config.json'), config)
    for name in os.listdir(CODE_DIR):
        if name.endswith('.py'):
            shutil.copyfile(osp.join(CODE_DIR, name), osp.join(save_dir, name))
    for name in CONNECTOR_CODE:
        shutil.copyfile(osp.join(MODEL_DIR, name), osp.join(save_dir, name))
    _write_text_model(llm, save_dir)

    GenerationConfig(
        do_sample=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_token_ids(tokenizer, cfg.prompt_template),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id
        is not None else tokenizer.eos_token_id).save_pretrained(save_dir)
    return save_dir
