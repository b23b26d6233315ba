"""Processor of a transformers-native ChartMoE release (remote code):
``AutoProcessor.from_pretrained(path, trust_remote_code=True)``.

``apply_chat_template(messages)`` writes the prompt of the prompt template
the model was trained with (an image item becomes ``<image>`` and a new
line, the user turn ends with the assistant's prefix);
``processor(images=..., text=...)`` pads each chart to a square with the
image mean (as in training), runs CLIP's image processor, expands each
``<image>`` into one token per visual token, prepends the BOS token and
pads the batch on the left: ``input_ids``, ``attention_mask``,
``pixel_values``.
"""
from PIL import Image
from transformers import BatchFeature, ProcessorMixin


def pad_to_square(image, fill):
    """The chart centred on a square of colour ``fill``."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


class ChartMoEProcessor(ProcessorMixin):
    """Image processor + tokenizer of a ChartMoE release (see the module
    docstring)."""
    attributes = ['image_processor', 'tokenizer']
    valid_kwargs = ['chat_template', 'image_token', 'num_image_tokens']
    image_processor_class = 'AutoImageProcessor'
    tokenizer_class = 'AutoTokenizer'

    def __init__(self, image_processor=None, tokenizer=None,
                 chat_template=None, image_token='<image>',
                 num_image_tokens=576, **kwargs):
        self.image_token = image_token
        self.num_image_tokens = num_image_tokens
        super().__init__(image_processor, tokenizer,
                         chat_template=chat_template)

    def __call__(self, images=None, text=None, return_tensors='pt', **kwargs):
        texts = [text] if isinstance(text, str) else list(text or [])
        features = {}
        if images is not None:
            images = images if isinstance(images, (list, tuple)) else [images]
            fill = tuple(int(x * 255) for x in self.image_processor.image_mean)
            features['pixel_values'] = self.image_processor(
                [pad_to_square(im.convert('RGB'), fill) for im in images],
                return_tensors=return_tensors)['pixel_values']
        image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        bos = ([self.tokenizer.bos_token_id]
               if self.tokenizer.bos_token_id is not None else [])
        rows = []
        for sample in texts:
            ids = bos + self.tokenizer.encode(sample, add_special_tokens=False)
            rows.append([t for i in ids for t in (
                [i] * self.num_image_tokens if i == image_id else [i])])
        if rows:
            import torch
            length = max(map(len, rows))
            pad = (self.tokenizer.pad_token_id
                   if self.tokenizer.pad_token_id is not None else
                   self.tokenizer.eos_token_id)
            features['input_ids'] = torch.tensor(
                [[pad] * (length - len(r)) + r for r in rows])
            features['attention_mask'] = torch.tensor(
                [[0] * (length - len(r)) + [1] * len(r) for r in rows])
        return BatchFeature(features)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)
