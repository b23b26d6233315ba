"""``IXC2ChartMoEModel``: InternLM-XComposer2 trained with XTuner, the way
ChartMoE trains it.

ChartMoE (arXiv 2409.03277; IDEA-FinAI/ChartMoE ``chartmoe/train/train.py``
and ``scripts/*.sh``) trains IXC2-VL-7B (arXiv 2401.16420) in stages:

- align (table / JSON / code): only ``vision_proj`` trains; the ViT, the
  LLM (``model.*`` including its Partial LoRA) and ``output`` are frozen;
- SFT (and the paper's knowledge stage): ``vision_proj`` is the MoE
  connector (router and experts train) and PEFT LoRA (r 64, alpha 64,
  dropout 0.05) wraps ``wqkv``, ``wo``, ``w1``, ``w2``, ``w3`` of every
  layer: the LoRA delta applies to every token, the layers' own
  ``Plora_A`` / ``Plora_B`` stay frozen.

A config names the IXC2 causal LM as XTuner's LLaVA configs name theirs:
``llm=dict(type=build_ixc2, source=..., torch_dtype=...,
quantization_config=...)`` (XTuner's ``pth_to_hf`` reads its
``quantization_config`` and builds the rest on the meta device). The module
holds it as ``self.ixc2`` (an :class:`IXC2ForCausalLM`, released key names
under ``ixc2.``; ``self.llm`` is the same module); LoRA is
injected into ``self.ixc2.model`` in place, so the adapters are
``ixc2.model.layers.N.<linear>.lora_{A,B}.default.weight`` and the wrapped
linears' own tensors ``...<linear>.base_layer.*``.
"""
import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from mmengine import print_log
from mmengine.model import BaseModel
from xtuner.registry import BUILDER

from ...model.chartmoe import _require_cuda_for_quantization
from ...model.checkpoint import load_checkpoint
from ...model.connector_formats import load_connector
from ...model.moe_block import RoutingRecorder
from .checkpoint import load_ixc2
from .configuration_ixc2 import IXC2Config
from .modeling_ixc2 import IXC2ForCausalLM
from .training_batch import expand_images
from .training_format import IGNORE_INDEX

# ChartMoE's LoRA targets (train.py's lora_target_modules).
LORA_TARGETS = ('wqkv', 'wo', 'w1', 'w2', 'w3')


def next_token_loss(output, hidden, labels):
    """IXC2's causal-LM loss (token-mean cross entropy of position ``t``
    predicting ``labels[t + 1]``, -100 ignored), computing the
    ``[*, vocab]`` logits only where a label is: ``hidden [B, L, D]``,
    ``labels [B, L]`` -> scalar (0 with a gradient when nothing is
    labelled)."""
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    if not bool(keep.any()):
        return hidden.sum() * 0.0
    logits = output(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, targets[keep])


def resolve_dtype(torch_dtype):
    """A torch dtype, or ``'auto'``, from a dtype or its name as a config
    or ``--cfg-options`` gives it (``'bfloat16'``, ``'torch.float32'``)."""
    if isinstance(torch_dtype, torch.dtype) or torch_dtype == 'auto':
        return torch_dtype
    dtype = getattr(torch, str(torch_dtype).replace('torch.', ''), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"torch_dtype={torch_dtype!r}: expected 'auto' or a "
                         "float dtype ('bfloat16', 'float16', 'float32')")
    return dtype


def building_on_meta():
    """Whether modules are being made on the meta device right now, as
    under accelerate's ``init_empty_weights`` (XTuner's ``pth_to_hf``) or
    ``torch.device('meta')``."""
    return torch.nn.Linear(1, 1).weight.is_meta


def build_ixc2(source, torch_dtype='auto', quantization_config=None):
    """The IXC2 causal LM, XTuner's ``llm`` entry of an IXC2 config (as
    ``AutoModelForCausalLM.from_pretrained`` is LLaVA's).

    ``source``: a released folder or offline hub id (:func:`load_ixc2`;
    built on meta from its ``config.json`` alone, no weight read, when
    called on the meta device: XTuner's ``pth_to_hf`` then fills the
    trained parts from the checkpoint), an :class:`IXC2Config` or a dict of
    its fields (random weights). ``torch_dtype``: a dtype, its name or
    ``'auto'`` (the stored one). ``quantization_config``: a bitsandbytes
    4-bit config (or its config dict) for QLoRA (:mod:`.qlora`, CUDA).
    """
    dtype = resolve_dtype(torch_dtype)
    if isinstance(source, str):
        model = load_ixc2(source, torch_dtype=dtype, tokenizer=False,
                          read_weights=not building_on_meta()).model
    else:
        config = source if isinstance(source, IXC2Config) else IXC2Config(
            **source)
        model = IXC2ForCausalLM(config)
        model = model if dtype == 'auto' else model.to(dtype)
    if quantization_config is not None:
        from .qlora import quantize_llm
        quantize_llm(model, BUILDER.build(quantization_config) if isinstance(
            quantization_config, dict) else quantization_config)
    return model


class IXC2ChartMoEModel(BaseModel):
    """IXC2 / ChartMoE for XTuner's trainer.

    ``llm``: the IXC2 causal LM, a config dict of :func:`build_ixc2`
    (``dict(type=build_ixc2, source=..., torch_dtype=...,
    quantization_config=...)``, XTuner's ``llm`` entry) or a built
    :class:`IXC2ForCausalLM`; held as ``self.ixc2`` (checkpoint keys
    ``ixc2.*``), also ``self.llm``. ``freeze_llm`` freezes ``model.*`` and
    ``output``; ``freeze_visual_encoder`` the ViT (``vit``, run without
    gradients then); ``vision_proj`` always trains.
    ``moe_projector=dict(pretrained=PATH)`` puts the MoE connector at
    ``PATH`` (a ``chartmoe build-moe`` folder or ChartMoE's
    ``mlp_moe.pth``) in place of ``vision_proj``. ``llm_lora``: a
    ``peft.LoraConfig`` (or its config dict), targets default
    :data:`LORA_TARGETS`; the LLM's base weights are then frozen. An
    ``llm`` with ``quantization_config`` (QLoRA) needs CUDA and stops at
    once otherwise (``QLoRANeedsCUDA``, naming ``cpu_config``).
    ``pretrained_pth``: a training checkpoint loaded last (e.g. the
    knowledge stage's into the SFT; not on the meta device, where the
    checkpoint being converted fills the trained parts). ``max_length``:
    embeddings per sequence (IXC2: 4096).

    ``forward(data, mode='loss')`` with ``data`` from
    :func:`~.training_batch.ixc2_collate_fn` (``input_ids`` / ``labels`` /
    ``attention_mask [B, L]``, ``pixel_values [N, 3, S, S]``) returns
    ``{'loss'}`` (:func:`next_token_loss`); ``routing_recorder`` then holds
    the MoE connector's routing (for ``RoutingStatsHook``).
    ``state_dict()`` holds the trained parts only (``ixc2.vision_proj.*``,
    the LoRA adapters, unfrozen LLM / ViT); :meth:`merged_ixc2` gives the
    plain :class:`IXC2ForCausalLM` with LoRA folded in.
    """

    def __init__(self, llm, freeze_llm=True, freeze_visual_encoder=True,
                 llm_lora=None, moe_projector=None, pretrained_pth=None,
                 use_activation_checkpointing=True, max_length=4096,
                 cpu_config=None, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        _require_cuda_for_quantization(llm, cpu_config)
        self.ixc2 = BUILDER.build(llm) if isinstance(llm, dict) else llm
        self.routing_recorder = None
        if moe_projector is not None:
            self._put_moe(dict(moe_projector))
        self.freeze_llm = freeze_llm or llm_lora is not None
        self.freeze_visual_encoder = freeze_visual_encoder
        self.ixc2.model.requires_grad_(not self.freeze_llm)
        self.ixc2.output.requires_grad_(not self.freeze_llm)
        self.ixc2.vit.requires_grad_(not freeze_visual_encoder)
        self.ixc2.vision_proj.requires_grad_(True)
        self.use_llm_lora = llm_lora is not None
        if self.use_llm_lora:
            self._inject_lora(llm_lora)
        self.ixc2.model.gradient_checkpointing = use_activation_checkpointing
        self.max_length = max_length
        if pretrained_pth is not None and not self.ixc2.output.weight.is_meta:
            from xtuner.model.utils import guess_load_checkpoint
            report = load_checkpoint(self, guess_load_checkpoint(
                pretrained_pth), pretrained_pth, group_depth=2)
            print_log(f'Load pretrained weight: {report.summary()}',
                      'current')
        self.ixc2.train()

    @property
    def llm(self):
        """The model ``pth_to_hf`` sets ``config.use_cache`` on."""
        return self.ixc2

    @property
    def projector(self):
        """The connector (``vision_proj``), as ``RoutingStatsHook`` reads
        it."""
        return self.ixc2.vision_proj

    def _put_moe(self, moe_cfg):
        path = moe_cfg.pop('pretrained', None)
        if path is None or moe_cfg:
            raise ValueError('moe_projector takes dict(pretrained=PATH) only '
                             f'(a chartmoe build-moe folder or mlp_moe.pth), '
                             f'got keys {sorted(moe_cfg) or "none"}')
        moe = load_connector(path)
        config = self.ixc2.config
        expected = (config.vision_config['hidden_size'], config.hidden_size)
        got = (moe.config.visual_hidden_size, moe.config.llm_hidden_size)
        if got != expected:
            raise ValueError(f'{path}: the MoE connector maps {got[0]} -> '
                             f'{got[1]}; this IXC2 needs {expected[0]} -> '
                             f'{expected[1]}')
        weight = self.ixc2.output.weight  # where the LLM is (CUDA: QLoRA)
        self.ixc2.vision_proj = moe.to(weight.device, weight.dtype)
        config.num_experts = moe.config.num_experts
        config.num_selected = moe.config.num_selected
        print_log(f'MoE connector from {path}: {moe.config.num_experts} '
                  f'experts {moe.config.expert_names}, top-'
                  f'{moe.config.num_selected}', 'current')
        self.routing_recorder = RoutingRecorder({'projector': moe})

    def _inject_lora(self, lora_config):
        from peft import inject_adapter_in_model
        if isinstance(lora_config, dict):
            lora_config = BUILDER.build(lora_config)
        if lora_config.target_modules is None:
            lora_config.target_modules = list(LORA_TARGETS)
        inject_adapter_in_model(lora_config, self.ixc2.model)
        for name, param in self.ixc2.model.named_parameters():
            param.requires_grad = '.lora_' in name

    def encode_images(self, pixel_values):
        """``[N, 3, S, S]`` -> ``[N, T, D]`` visual tokens; the ViT runs
        without gradients when frozen, ``vision_proj`` always with."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and
                                    not self.freeze_visual_encoder):
            features = self.ixc2.vit(pixel_values)
        return self.ixc2.vision_proj(features).to(
            self.ixc2.output.weight.dtype)

    def forward(self, data, data_samples=None, mode='loss'):
        if mode != 'loss':
            raise NotImplementedError(
                f"IXC2ChartMoEModel trains only (mode='loss'), got {mode!r}")
        if self.routing_recorder is not None:
            self.routing_recorder.clear()
        pixel_values = data.get('pixel_values')
        image_tokens = (None if pixel_values is None
                        else self.encode_images(pixel_values))
        inputs_embeds, im_mask, labels, attention_mask = expand_images(
            self.ixc2.embed_tokens, data['input_ids'], data['labels'],
            data['attention_mask'], image_tokens, self.max_length)
        hidden = self.ixc2.model(inputs_embeds, im_mask, attention_mask)
        return {'loss': next_token_loss(self.ixc2.output, hidden, labels)}

    def _is_trained(self, key):
        return ('ixc2.vision_proj.' in key or '.lora_' in key
                or (not self.freeze_llm and ('ixc2.model.' in key
                                             or 'ixc2.output.' in key))
                or (not self.freeze_visual_encoder and 'ixc2.vit.' in key))

    def state_dict(self, *args, **kwargs):
        """The trained parts only (as XTuner's LLaVAModel saves):
        ``ixc2.vision_proj.*`` (with the MoE's ``num_selected``), the LoRA
        adapters, and the LLM / ViT when they train."""
        state = super().state_dict(*args, **kwargs)
        return OrderedDict((k, v) for k, v in state.items()
                           if self._is_trained(k))

    def merged_ixc2(self, inplace=False):
        """The trained model as a plain :class:`IXC2ForCausalLM` (the
        released layout, keys ``model.*``, ``vit.*``, ``vision_proj.*``,
        ``output.*``): each LoRA folded into its linear's base weight
        (``W += B A * alpha / r``, as ChartMoE's ``merge_and_unload``), the
        trained ``vision_proj`` kept, ``config.num_experts`` /
        ``num_selected`` set for a MoE connector. A copy unless
        ``inplace``."""
        from peft.tuners.lora import LoraLayer
        model = self.ixc2 if inplace else copy.deepcopy(self.ixc2)
        for name, module in list(model.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                parent, _, child = name.rpartition('.')
                setattr(model.get_submodule(parent), child,
                        module.get_base_layer())
        model.model.gradient_checkpointing = False
        return model.eval()

    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs={},
              save_format='xtuner', **kwargs):
        """``pth_to_hf``: written by
        ``xtuner_chartmoe.release.ixc2_release.save_ixc2_release``."""
        from xtuner_chartmoe.release.ixc2_release import save_ixc2_release
        save_ixc2_release(self, cfg, save_dir, fp32=fp32,
                          save_format=save_format)
