"""IXC2's vision path: CLIP ViT-L/14 at 490 px, 1225 visual tokens per image.

IXC2 (arXiv 2401.16420) takes OpenAI's CLIP ViT-L/14-336 and runs it on
490x490 images: the 24x24 patch rows of its 577-row position table are
resized bicubically to 35x35 (CLS row kept, 1226 rows,
:func:`interpolate_position_table`); the features are the output of the
last encoder layer (no post-layernorm) without the CLS token. The released
checkpoints store the 1226-row table, so the tower is a transformers
``CLIPVisionModel`` configured for 490 px and takes 490-px input as is.

Preprocessing (:func:`image_to_tensor`): RGB, resized to 490x490 bicubic
(aspect ratio not kept, no crop), scaled to [0, 1], normalised with CLIP's
mean and std.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPVisionModel

from .errors import ImageLoadError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def interpolate_position_table(table, grid):
    """``table [1 + g*g, C]`` (CLS row first, patches row-major) -> ``[1 +
    grid*grid, C]``: the patch rows as a ``g x g`` image resized bicubically
    (``align_corners=False``) to ``grid x grid``, computed in float32."""
    cls_row, patches = table[:1], table[1:]
    side = round(patches.shape[0] ** 0.5)
    if side * side != patches.shape[0]:
        raise ValueError(f'position table of {table.shape[0]} rows is not '
                         'CLS + a square grid')
    image = patches.float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=(grid, grid), mode='bicubic',
                          align_corners=False)
    patches = image.permute(0, 2, 3, 1).reshape(grid * grid, -1)
    return torch.cat([cls_row, patches.to(table.dtype)])


def load_image(image):
    """A path or PIL image -> an RGB PIL image. Raises
    :class:`ImageLoadError` naming the file when it cannot be read."""
    if isinstance(image, Image.Image):
        return image.convert('RGB')
    try:
        with Image.open(image) as img:
            return img.convert('RGB')
    except (OSError, ValueError) as err:
        raise ImageLoadError(f'{image}: cannot read an image from it '
                             f'({err})') from None


def image_to_tensor(image, size):
    """An image (path or PIL) -> ``[3, size, size]`` float32, IXC2's
    ``vis_processor``: bicubic resize to ``size x size``, /255, CLIP
    normalisation."""
    img = load_image(image).resize((size, size), Image.BICUBIC)
    pixels = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    mean = torch.tensor(CLIP_MEAN)
    std = torch.tensor(CLIP_STD)
    return ((pixels - mean) / std).permute(2, 0, 1).contiguous()


class IXC2VisionTower(nn.Module):
    """``vit`` of the released state dict: ``vision_tower`` is a
    ``CLIPVisionModel`` (keys ``vision_tower.vision_model.*``) whose
    position table has ``(img_size / 14)^2 + 1`` rows.

    ``forward(pixel_values [B, 3, S, S]) -> [B, (S / 14)^2, C]``: the last
    encoder layer's hidden states without CLS (1225 x 1024 at 490 px).
    """

    def __init__(self, clip_vision_config):
        super().__init__()
        self.vision_tower = CLIPVisionModel(clip_vision_config)

    def forward(self, pixel_values):
        dtype = self.vision_tower.vision_model.embeddings.patch_embedding \
            .weight.dtype
        out = self.vision_tower(pixel_values.to(dtype))
        return out.last_hidden_state[:, 1:]
