"""``ChartMoEModel``: XTuner's LLaVAModel with a (MoE) connector to choose."""
import torch
from mmengine import print_log
from xtuner.model import LLaVAModel
from xtuner.model.utils import (guess_load_checkpoint,
                                prepare_inputs_labels_for_multimodal)
from xtuner.registry import BUILDER

from .losses import balance_loss, router_z_loss
from .modeling_moe_projector import MoEProjectorModel
from .moe_builder import build_moe_projector, load_dense_projector_state


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
    - ``balance_loss_coef`` / ``z_loss_coef``: weights of the router aux losses
      (0 = off, ChartMoE's default; CuMo uses 0.1 / 0.01). They show up as
      ``balance_loss`` / ``z_loss`` in the training log.

    ``forward(data, mode='loss')`` returns ``{'loss', ['balance_loss'],
    ['z_loss']}``; the last routing of the connector is kept in
    ``self.last_routing`` (a ``MoEProjectorOutput``) for hooks and analysis.
    """

    def __init__(self,
                 llm,
                 visual_encoder,
                 projector_init=None,
                 moe_projector=None,
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
        if moe_projector is not None:
            self.projector = self._build_moe(dict(moe_projector)).to(
                self.visual_encoder.dtype)
            if use_activation_checkpointing:
                self.projector.enable_input_require_grads()
                self.projector.gradient_checkpointing_enable()
        if pretrained_pth is not None:
            self.load_state_dict(guess_load_checkpoint(pretrained_pth),
                                 strict=False)
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

    def aux_losses(self, routing):
        """Weighted router losses to add to the loss dict (empty when off)."""
        if routing is None:
            return {}
        losses = {}
        if self.balance_loss_coef:
            losses['balance_loss'] = self.balance_loss_coef * balance_loss(
                routing.router_probs, routing.selected_experts)
        if self.z_loss_coef:
            losses['z_loss'] = self.z_loss_coef * router_z_loss(
                routing.router_logits)
        return losses

    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs={},
              save_format='xtuner', **kwargs):
        """Write ``llm_adapter/`` (or the LLM), ``projector/`` (the MoE
        connector with its code, reloadable by ``AutoModel``) in XTuner's
        layout. Other formats hard-code a dense projector."""
        if save_format != 'xtuner':
            raise NotImplementedError(
                f"save_format={save_format!r} is not supported by "
                "ChartMoEModel: the 'huggingface' and 'official' LLaVA formats "
                "have no place for a MoE connector. Use --save-format xtuner.")
        self.to_xtuner_llava(cfg, save_dir, fp32, save_pretrained_kwargs)


BUILDER.register_module(module=ChartMoEModel)
