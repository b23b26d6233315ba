"""The LLaVA family's :class:`LLaVAChat`: a merged ChartMoE release or a
training checkpoint, answering questions about charts.

A release folder (written by ``chartmoe merge``) holds::

    llm/             merged LLM (LoRA folded in) + tokenizer
    projector/       MoE connector (AutoModel, trust_remote_code)
    visual_encoder/  CLIP vision tower + image processor
    chartmoe.json    prompt template, visual_select_layer
"""
import json
import os.path as osp

import torch
from PIL import Image
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM,
                          AutoTokenizer, CLIPImageProcessor)
from xtuner.dataset.utils import expand2square
from xtuner.utils import DEFAULT_IMAGE_TOKEN

from xtuner_chartmoe.families.base import ChatModel, left_pad
from xtuner_chartmoe.families.llava.internlm2_generation import (
    fix_internlm2_generation)
from xtuner_chartmoe.model.clip_vision_loader import load_clip_vision
from xtuner_chartmoe.model.configuration_moe_projector import MoEProjectorConfig
from xtuner_chartmoe.model.connector_formats import load_connector
from xtuner_chartmoe.model.modeling_moe_projector import MoEProjectorModel
from xtuner_chartmoe.prompts import stop_token_ids
from xtuner_chartmoe.release.merge import RELEASE_MANIFEST


def load_projector(path):
    """The connector saved at ``path``: the MoE connector (checked tensor by
    tensor) or XTuner's dense projector."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=True)
    if config.model_type == MoEProjectorConfig.model_type:
        return load_connector(path)
    return AutoModel.from_pretrained(path, trust_remote_code=True)


def _device(device):
    return torch.device(device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))


class LLaVAChat(ChatModel):
    """A ChartMoE model of XTuner's LLaVA family ready to answer (the
    :class:`~xtuner_chartmoe.families.base.ChatModel` interface).

    Build it with :meth:`from_release` (a merged release folder) or
    :meth:`from_checkpoint` (a training config + ``iter_*.pth``).
    ``answer(images, questions)`` takes lists of PIL images (or paths) and
    question strings (already carrying any task prompt) and returns the
    decoded replies, greedily, in one left-padded batch; with
    ``return_routing=True`` also the connector's routing of the batch (a
    ``RouterOutput``: ``probs [B, T, E]``, ``experts [B, T, k]``, ...; None
    for a dense connector) for expert maps and statistics.
    """

    family = 'llava'

    def __init__(self, llm, tokenizer, visual_encoder, image_processor,
                 projector, prompt_template, visual_select_layer=-2):
        self.llm, self.tokenizer = llm.eval(), tokenizer
        self.visual_encoder = visual_encoder.eval()
        self.image_processor = image_processor
        self.projector = projector.eval()
        self.template = dict(prompt_template)
        self.visual_select_layer = visual_select_layer
        self.device = next(llm.parameters()).device
        self.stop_token_ids = stop_token_ids(self.tokenizer, self.template)

    @classmethod
    def from_release(cls, release_dir, device=None, dtype=None):
        """Load ``llm/``, ``projector/``, ``visual_encoder/`` and
        ``chartmoe.json`` written by ``chartmoe merge``."""
        manifest_path = osp.join(release_dir, RELEASE_MANIFEST)
        if not osp.isfile(manifest_path):
            raise FileNotFoundError(
                f'{manifest_path} not found: {release_dir} is not a ChartMoE '
                'release (write one with chartmoe merge)')
        with open(manifest_path) as f:
            manifest = json.load(f)
        device = _device(device)
        dtype = dtype or (torch.float16
                          if device.type == 'cuda' else torch.float32)
        encoder_dir = osp.join(release_dir, 'visual_encoder')
        llm = AutoModelForCausalLM.from_pretrained(
            osp.join(release_dir, 'llm'), torch_dtype=dtype,
            trust_remote_code=True)
        fix_internlm2_generation(type(llm))
        return cls(
            llm=llm.to(device),
            tokenizer=AutoTokenizer.from_pretrained(
                osp.join(release_dir, 'llm'), trust_remote_code=True),
            visual_encoder=load_clip_vision(encoder_dir,
                                            torch_dtype=dtype).to(device),
            image_processor=CLIPImageProcessor.from_pretrained(encoder_dir),
            projector=load_projector(osp.join(release_dir, 'projector'))
            .to(device, dtype),
            prompt_template=manifest['prompt_template'],
            visual_select_layer=manifest['visual_select_layer'])

    @classmethod
    def from_checkpoint(cls, config_file, checkpoint, device=None):
        """Build the training config's model and load ``checkpoint`` (the
        LoRA LLM is used unmerged)."""
        from mmengine.config import Config
        from xtuner.registry import BUILDER
        cfg = Config.fromfile(config_file)
        cfg.model.pretrained_pth = checkpoint
        model = BUILDER.build(cfg.model)
        model.llm.config.use_cache = True
        model.to(_device(device))
        return cls(llm=model.llm, tokenizer=BUILDER.build(cfg.tokenizer),
                   visual_encoder=model.visual_encoder,
                   image_processor=BUILDER.build(cfg.image_processor),
                   projector=model.projector,
                   prompt_template=cfg.prompt_template,
                   visual_select_layer=model.visual_select_layer)

    @property
    def connector(self):
        return self.projector

    @property
    def expert_names(self):
        if isinstance(self.projector, MoEProjectorModel):
            return list(self.projector.config.expert_names)
        return []

    def pixel_values(self, images):
        """PIL images or paths -> [B, 3, H, W] (padded to square as in
        training)."""
        mean = tuple(int(x * 255) for x in self.image_processor.image_mean)
        tensors = []
        for image in images:
            if isinstance(image, str):
                image = Image.open(image)
            image = expand2square(image.convert('RGB'), mean)
            tensors.append(self.image_processor.preprocess(
                image, return_tensors='pt')['pixel_values'][0])
        return torch.stack(tensors).to(self.device, self.visual_encoder.dtype)

    @torch.no_grad()
    def encode_images(self, images):
        """-> (visual tokens [B, T, D_llm], the connector's routing: a
        ``RouterOutput`` over [B, T], or None for a dense connector)."""
        features = self.visual_encoder(
            self.pixel_values(images), output_hidden_states=True
        ).hidden_states[self.visual_select_layer][:, 1:]
        if not self.is_moe:
            return self.projector(features), None
        out = self.projector(features, output_router_logits=True)
        return out.last_hidden_state, out.routing

    def prompt_ids(self, question):
        """Token ids of the chat prompt with one image slot; returns (ids
        before the image, ids after it)."""
        text = self.template['INSTRUCTION'].format(
            input=f'{DEFAULT_IMAGE_TOKEN}\n{question}', round=1)
        before, after = text.split(DEFAULT_IMAGE_TOKEN)
        bos = [self.tokenizer.bos_token_id
               ] if self.tokenizer.bos_token_id is not None else []
        encode = lambda s: self.tokenizer.encode(s, add_special_tokens=False)
        return bos + encode(before), encode(after)

    @torch.no_grad()
    def answer(self, images, questions, max_new_tokens=500,
               return_routing=False):
        """Greedy replies, one per (image, question); with
        ``return_routing``, ``(replies, routing)`` (see the class
        docstring)."""
        if len(images) != len(questions):
            raise ValueError(f'{len(images)} images for {len(questions)} '
                             'questions')
        visual, routing = self.encode_images(images)
        embed = self.llm.get_input_embeddings()
        sequences = []
        for tokens, question in zip(visual, questions):
            before, after = self.prompt_ids(question)
            ids = lambda x: torch.tensor(x, dtype=torch.long, device=self.device)
            sequences.append(torch.cat(
                [embed(ids(before)), tokens.to(embed.weight.dtype),
                 embed(ids(after))]))
        inputs, mask = left_pad(sequences)
        output = self.llm.generate(
            inputs_embeds=inputs, attention_mask=mask, do_sample=False,
            max_new_tokens=max_new_tokens, eos_token_id=self.stop_token_ids,
            pad_token_id=self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None else
            self.tokenizer.eos_token_id)
        replies = [self.tokenizer.decode(seq, skip_special_tokens=True).strip()
                   for seq in output]
        return (replies, routing) if return_routing else replies
