"""``ChartMoEModel``: XTuner's LLaVAModel with a (MoE) connector to choose."""
import os.path as osp

import torch
import torch.nn as nn
from mmengine import print_log
from mmengine.registry import Registry
from xtuner.model import LLaVAModel
from xtuner.model.utils import guess_load_checkpoint
from xtuner.registry import BUILDER

from xtuner_chartmoe.families.llava.internlm2_generation import (
    fix_internlm2_generation)
from xtuner_chartmoe.fileio import atomic_write_json
from xtuner_chartmoe.model.checkpoint import load_checkpoint
from xtuner_chartmoe.model.connector_builder import build_moe_projector
from xtuner_chartmoe.model.connector_formats import load_connector, load_dense_projector_state
from xtuner_chartmoe.model.losses import balance_loss, router_z_loss
from xtuner_chartmoe.model.modeling_clip_moe import upcycle_clip_mlps
from xtuner_chartmoe.model.modeling_moe_projector import MoEProjectorModel
from xtuner_chartmoe.model.moe_block import RoutingRecorder, SparseMoEBlock
from xtuner_chartmoe.engine.user_errors import UserError

# What pth_to_hf writes next to XTuner's layout: the settings the merge into
# a release needs, resolved from the training config.
HF_MANIFEST = 'chartmoe_hf.json'
# pth_to_hf save formats beyond XTuner's own layout, registered where they
# are written (the release side: ``huggingface`` in release/hf_native.py).
SAVE_FORMATS = Registry('chartmoe save format',
                        locations=['xtuner_chartmoe.release.hf_native'])


class QLoRANeedsCUDA(UserError):
    """A quantized (QLoRA) LLM was asked for on a machine without CUDA; the
    message names the config to use instead (reported in one line)."""


def _require_cuda_for_quantization(llm, cpu_config):
    quantization = llm.get('quantization_config') if isinstance(
        llm, dict) else None
    if quantization is None or torch.cuda.is_available():
        return
    instead = cpu_config or 'the LoRA config of the same stage'
    raise QLoRANeedsCUDA(
        'QLoRA needs a CUDA GPU (bitsandbytes loads the LLM in 4-bit '
        f'NF4 only on CUDA) and this machine has none; train {instead} '
        'instead')


def linear_layer_names(llm):
    """Names of the LLM's ``nn.Linear`` layers for LoRA, without its output
    embeddings (``lm_head`` / InternLM2's ``output``) whatever they are
    called."""
    head = llm.get_output_embeddings()
    return sorted({name.split('.')[-1] for name, module in llm.named_modules()
                   if isinstance(module, nn.Linear) and module is not head})


class ChartMoEModel(LLaVAModel):
    """LLaVA model whose vision-to-LLM connector is dense or a MoE.

    Everything of ``LLaVAModel`` applies (``llm``, ``visual_encoder``,
    ``freeze_*``, ``llm_lora``, ``pretrained_pth``, ...); its forward is
    used as is. The connector is ``self.projector`` so XTuner's checkpoint
    filter keeps it. Choose it with:

    - ``projector_init``: path of a dense projector to start the dense
      connector from (align stages: the general expert).
    - ``moe_projector``: a dict that makes the connector a MoE: either
      ``dict(pretrained=PATH)`` (a folder written by
      ``chartmoe build-moe`` or ``pth_to_hf``, or ChartMoE's own
      ``mlp_moe.pth``), or the keyword arguments of
      :func:`build_moe_projector` (``mode``, ``expert_projectors``,
      ``num_selected``, ``router_type``, ...).
    - ``visual_encoder_moe``: e.g. ``dict(num_experts=4, num_selected=2)``
      turns every CLIP encoder MLP into a MoE of copies of it (CuMo
      co-upcycling; see ``modeling_clip_moe``).
    - ``balance_loss_coef`` / ``z_loss_coef``: weights of the router aux losses
      (0 = off, ChartMoE's default; CuMo uses 0.1 / 0.01), averaged over all
      MoE layers (connector and CLIP). They show up as ``balance_loss`` /
      ``z_loss`` in the training log.

    ``pretrained_pth`` is loaded once, after the MoE layers exist, through
    :func:`~.checkpoint.load_checkpoint`: a MoE checkpoint restores them, a
    dense one (e.g. of a pre-finetune) is upcycled into every expert; a
    checkpoint that fits nothing stops with an error naming its keys.
    Without ``target_modules`` LoRA wraps every linear layer of the LLM but
    its output embeddings. A quantized LLM (QLoRA) without CUDA stops at once
    (:class:`QLoRANeedsCUDA`) with one line naming ``cpu_config`` (the
    config to train on such a machine).

    ``forward(data, mode='loss')`` returns ``{'loss', ['balance_loss'],
    ['z_loss']}``. ``routing_recorder`` (a ``RoutingRecorder``) holds the
    routing of every MoE layer in the last forward, by name (the CLIP MoE
    MLPs by module path, then ``'projector'``), for losses and hooks.
    """

    def __init__(self,
                 llm,
                 visual_encoder,
                 projector_init=None,
                 moe_projector=None,
                 visual_encoder_moe=None,
                 balance_loss_coef=0.0,
                 z_loss_coef=0.0,
                 pretrained_pth=None,
                 use_activation_checkpointing=True,
                 cpu_config=None,
                 **kwargs):
        if projector_init is not None and moe_projector is not None:
            raise ValueError('give either projector_init (dense connector) '
                             'or moe_projector, not both')
        _require_cuda_for_quantization(llm, cpu_config)
        super().__init__(
            llm,
            visual_encoder,
            pretrained_pth=None,
            use_activation_checkpointing=use_activation_checkpointing,
            **kwargs)
        base_llm = self.llm.get_base_model() if self.use_llm_lora else self.llm
        fix_internlm2_generation(type(base_llm))
        if projector_init is not None:
            report = load_checkpoint(
                self.projector, load_dense_projector_state(projector_init),
                projector_init, strict=True)
            print_log(f'Dense projector initialised: {report.summary()}',
                      'current')
        if visual_encoder_moe is not None:
            upcycle_clip_mlps(self.visual_encoder, **visual_encoder_moe)
            self.visual_encoder.requires_grad_(not self.freeze_visual_encoder)
            print_log(f'CLIP MLPs upcycled to MoE: {dict(visual_encoder_moe)}',
                      'current')
        if moe_projector is not None:
            self.projector = self._build_moe(dict(moe_projector)).to(
                self.visual_encoder.dtype)
            if use_activation_checkpointing:
                self.projector.enable_input_require_grads()
                self.projector.gradient_checkpointing_enable()
        if pretrained_pth is not None:
            report = load_checkpoint(self, guess_load_checkpoint(pretrained_pth),
                                     pretrained_pth)
            print_log(f'Load pretrained weight: {report.summary()}', 'current')
        self.balance_loss_coef = balance_loss_coef
        self.z_loss_coef = z_loss_coef
        self.routing_recorder = RoutingRecorder(self._moe_layers())

    def _build_moe(self, moe_cfg):
        if 'pretrained' in moe_cfg:
            path = moe_cfg.pop('pretrained')
            if moe_cfg:
                raise ValueError('moe_projector=dict(pretrained=...) takes no '
                                 f'other keys, got {sorted(moe_cfg)}')
            moe = load_connector(path)
        else:
            moe = build_moe_projector(**moe_cfg)
        expected = (self.visual_encoder.config.hidden_size,
                    self.llm.config.hidden_size)
        got = (moe.config.visual_hidden_size, moe.config.llm_hidden_size)
        if got != expected:
            raise ValueError(
                f'MoE connector maps {got[0]} -> {got[1]} but the visual '
                f'encoder / LLM need {expected[0]} -> {expected[1]}')
        print_log(
            f'MoE connector: {moe.config.num_experts} experts '
            f'{moe.config.expert_names}, top-{moe.config.num_selected}, '
            f'{moe.config.router_type} router', 'current')
        return moe

    def _prepare_llm_for_lora(self, lora_config,
                              use_activation_checkpointing=True):
        lora_config = self._parse_lora_config(lora_config)
        if lora_config.target_modules is None:
            lora_config.target_modules = linear_layer_names(self.llm)
        super()._prepare_llm_for_lora(lora_config,
                                      use_activation_checkpointing)

    @property
    def is_moe(self):
        return isinstance(self.projector, MoEProjectorModel)

    def forward(self, data, data_samples=None, mode='loss'):
        self.routing_recorder.clear()
        outputs = super().forward(data, data_samples, mode)
        if mode == 'loss':
            outputs.update(self.aux_losses())
        return outputs

    def _moe_layers(self):
        """``{name: MoE layer}``: the CLIP MoE MLPs, then the connector."""
        layers = {f'visual_encoder.{name}': module for name, module in
                  self.visual_encoder.named_modules()
                  if isinstance(module, SparseMoEBlock)}
        if self.is_moe:
            layers['projector'] = self.projector
        return layers

    def moe_routings(self):
        """The ``RouterOutput`` of every MoE layer used in the last forward:
        the CLIP MoE layers, then the connector."""
        return list(self.routing_recorder.routings.values())

    def aux_losses(self):
        """Weighted router losses (mean over MoE layers) for the loss dict;
        empty when the coefficients are 0."""
        if not (self.balance_loss_coef or self.z_loss_coef):
            return {}
        routings = self.moe_routings()
        if not routings:
            return {}
        losses = {}
        if self.balance_loss_coef:
            losses['balance_loss'] = self.balance_loss_coef * torch.stack([
                balance_loss(r.probs, r.experts) for r in routings]).mean()
        if self.z_loss_coef:
            losses['z_loss'] = self.z_loss_coef * torch.stack(
                [router_z_loss(r.logits) for r in routings]).mean()
        return losses

    def materialized(self, cfg):
        """This model with real tensors everywhere: ``pth_to_hf`` builds it
        on the meta device and fills in only the trained tensors, which is
        enough for XTuner's layout but not for a whole-model format. Then a
        model is built from ``cfg`` (reading the pretrained LLM and vision
        tower) and the trained tensors are copied into it."""
        state = nn.Module.state_dict(self)
        if not any(t.is_meta for t in state.values()):
            return self
        full = BUILDER.build(cfg.model)
        full.load_state_dict({k: v for k, v in state.items()
                              if not v.is_meta}, strict=False)
        return full

    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs={},
              save_format='xtuner', **kwargs):
        """``pth_to_hf``: ``save_format='xtuner'`` writes ``llm_adapter/``
        (or the LLM), ``projector/`` (the MoE connector with its code,
        reloadable by ``AutoModel``), the visual encoder if trained, in
        XTuner's layout, plus ``chartmoe_hf.json`` (what
        ``chartmoe merge`` needs, resolved from ``cfg``);
        ``'huggingface'`` writes a transformers-native release
        (:mod:`xtuner_chartmoe.release.hf_native`). LLaVA's ``'official'`` format
        has no place for a MoE connector."""
        if save_format != 'xtuner' and save_format in SAVE_FORMATS:
            SAVE_FORMATS.get(save_format)(self.materialized(cfg), cfg,
                                          save_dir, fp32)
            return
        if save_format != 'xtuner':
            raise NotImplementedError(
                f'save_format={save_format!r} is not supported by '
                "ChartMoEModel: LLaVA's official format has a dense "
                "mm_projector and no place for a MoE connector. Use "
                "--save-format xtuner (then chartmoe merge) or "
                '--save-format huggingface.')
        self.to_xtuner_llava(cfg, save_dir, fp32, save_pretrained_kwargs)
        manifest = {
            'llm': cfg.model.llm.pretrained_model_name_or_path,
            'visual_encoder':
            cfg.model.visual_encoder.pretrained_model_name_or_path,
            'image_processor':
            cfg.image_processor.pretrained_model_name_or_path,
            'prompt_template': dict(cfg.prompt_template),
            'visual_select_layer': self.visual_select_layer,
        }
        atomic_write_json(osp.join(save_dir, HF_MANIFEST), manifest)


BUILDER.register_module(module=ChartMoEModel)
