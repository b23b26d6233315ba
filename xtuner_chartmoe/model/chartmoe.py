"""``ChartMoEModel``: XTuner's LLaVAModel with a (MoE) connector to choose."""
import json
import os.path as osp

import torch
from mmengine import print_log
from xtuner.model import LLaVAModel
from xtuner.model.utils import (guess_load_checkpoint,
                                prepare_inputs_labels_for_multimodal)
from xtuner.registry import BUILDER

from .clip_moe import clip_moe_layers, upcycle_clip_mlps
from .losses import balance_loss, router_z_loss
from .modeling_moe_projector import MoEProjectorModel
from .moe_builder import build_moe_projector, load_dense_projector_state

HF_MANIFEST = 'chartmoe_hf.json'


class ChartMoEModel(LLaVAModel):
    """LLaVA model whose vision-to-LLM connector is dense or a MoE.

    Everything of ``LLaVAModel`` applies (``llm``, ``visual_encoder``,
    ``freeze_*``, ``llm_lora``, ``pretrained_pth``, ...). The connector is
    ``self.projector`` so XTuner's checkpoint filter keeps it. Choose it with:

    - ``projector_init``: path of a dense projector to start the dense
      connector from (align stages: the general expert).
    - ``moe_projector``: a dict that makes the connector a MoE: either
      ``dict(pretrained=DIR)`` (a folder written by
      ``tools/build_moe_connector.py`` or ``pth_to_hf``), or the keyword
      arguments of :func:`build_moe_projector` (``mode``,
      ``expert_projectors``, ``num_selected``, ``router_type``, ...).
    - ``visual_encoder_moe``: e.g. ``dict(num_experts=4, num_selected=2)``
      turns every CLIP encoder MLP into a MoE of copies of it (CuMo
      co-upcycling; see ``clip_moe``).
    - ``balance_loss_coef`` / ``z_loss_coef``: weights of the router aux losses
      (0 = off, ChartMoE's default; CuMo uses 0.1 / 0.01), averaged over all
      MoE layers (connector and CLIP). They show up as ``balance_loss`` /
      ``z_loss`` in the training log.

    ``pretrained_pth`` is applied before the MoE layers are made (so a dense
    checkpoint, e.g. of a pre-finetune stage, is what gets copied into the
    experts) and again after (so a MoE checkpoint restores them).

    ``forward(data, mode='loss')`` returns ``{'loss', ['balance_loss'],
    ['z_loss']}``; the last routing of the connector is kept in
    ``self.last_routing`` (a ``MoEProjectorOutput``) for hooks and analysis.
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
                 **kwargs):
        if projector_init is not None and moe_projector is not None:
            raise ValueError('give either projector_init (dense connector) '
                             'or moe_projector, not both')
        super().__init__(
            llm,
            visual_encoder,
            pretrained_pth=None,
            use_activation_checkpointing=use_activation_checkpointing,
            **kwargs)
        if projector_init is not None:
            self.projector.load_state_dict(
                load_dense_projector_state(projector_init))
            print_log(f'Dense projector initialised from {projector_init}',
                      'current')
        pretrained = guess_load_checkpoint(
            pretrained_pth) if pretrained_pth is not None else None
        if pretrained is not None:  # dense weights, before upcycling
            self.load_state_dict(pretrained, strict=False)
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
        if pretrained is not None:  # MoE weights, if the checkpoint has them
            self.load_state_dict(pretrained, strict=False)
            print_log(f'Load pretrained weight from {pretrained_pth}',
                      'current')
        self.balance_loss_coef = balance_loss_coef
        self.z_loss_coef = z_loss_coef
        self.last_routing = None

    def _build_moe(self, moe_cfg):
        if 'pretrained' in moe_cfg:
            path = moe_cfg.pop('pretrained')
            if moe_cfg:
                raise ValueError('moe_projector=dict(pretrained=...) takes no '
                                 f'other keys, got {sorted(moe_cfg)}')
            moe = MoEProjectorModel.from_pretrained(path)
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

    @property
    def is_moe(self):
        return isinstance(self.projector, MoEProjectorModel)

    @staticmethod
    def _prepare_for_flash_attn(cfg, llm_cfg):
        # XTuner asks torch.cpu.is_bf16_supported(), which this torch lacks;
        # on CPU keep the LLM's default attention (sdpa for Llama).
        if torch.cuda.is_available():
            return LLaVAModel._prepare_for_flash_attn(cfg, llm_cfg)
        return cfg, llm_cfg

    def encode_images(self, pixel_values):
        """pixel_values [B, 3, H, W] -> visual tokens in the LLM space
        ``[B, T, Dl]`` (T = patches, CLS dropped) and the routing (or None)."""
        visual_outputs = self.visual_encoder(
            pixel_values.to(self.visual_encoder.dtype),
            output_hidden_states=True)
        features = visual_outputs.hidden_states[self.visual_select_layer][:, 1:]
        if not self.is_moe:
            return self.projector(features), None
        routing = self.projector(features, output_router_logits=True)
        return routing.last_hidden_state, routing

    def forward(self, data, data_samples=None, mode='loss'):
        if self.is_first_iter:
            self.to(data['input_ids'].device)
            self.is_first_iter = False
        self.last_routing = None
        if 'pixel_values' in data:
            data['pixel_values'], self.last_routing = self.encode_images(
                data['pixel_values'])
            data = prepare_inputs_labels_for_multimodal(llm=self.llm, **data)
        if mode == 'loss':
            losses = self.compute_loss(data, data_samples)
            losses.update(self.aux_losses(self.last_routing))
            return losses
        if mode == 'predict':
            return self.predict(data, data_samples)
        if mode == 'tensor':
            return self._forward(data, data_samples)
        raise NotImplementedError(f'unknown mode {mode!r}')

    def moe_routings(self, connector_routing):
        """(probs, selected experts, logits) of every MoE layer used in the
        last forward: the CLIP MoE layers, then the connector."""
        routings = [(r.probs, r.experts, r.logits) for r in (
            m.last_routing for m in clip_moe_layers(self.visual_encoder))
            if r is not None]
        if connector_routing is not None:
            routings.append((connector_routing.router_probs,
                             connector_routing.selected_experts,
                             connector_routing.router_logits))
        return routings

    def aux_losses(self, routing):
        """Weighted router losses (mean over MoE layers) for the loss dict;
        empty when the coefficients are 0."""
        routings = self.moe_routings(routing)
        if not routings or not (self.balance_loss_coef or self.z_loss_coef):
            return {}
        losses = {}
        if self.balance_loss_coef:
            losses['balance_loss'] = self.balance_loss_coef * torch.stack([
                balance_loss(probs, chosen) for probs, chosen, _ in routings
            ]).mean()
        if self.z_loss_coef:
            losses['z_loss'] = self.z_loss_coef * torch.stack(
                [router_z_loss(logits) for _, _, logits in routings]).mean()
        return losses

    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs={},
              save_format='xtuner', **kwargs):
        """Write ``llm_adapter/`` (or the LLM), ``projector/`` (the MoE
        connector with its code, reloadable by ``AutoModel``), the visual
        encoder if trained, in XTuner's layout, plus ``chartmoe_hf.json``
        (what ``tools/merge_chartmoe.py`` needs, resolved from ``cfg``). Other
        formats hard-code a dense projector."""
        if save_format != 'xtuner':
            raise NotImplementedError(
                f"save_format={save_format!r} is not supported by "
                "ChartMoEModel: the 'huggingface' and 'official' LLaVA formats "
                "have no place for a MoE connector. Use --save-format xtuner.")
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
        with open(osp.join(save_dir, HF_MANIFEST), 'w') as f:
            json.dump(manifest, f, indent=1)


BUILDER.register_module(module=ChartMoEModel)
