"""Training batches for IXC2: padding samples together, then (model side)
turning each image placeholder into the image's visual tokens.

This is IXC2's ``interleav_wrap`` (InternLM-XComposer2, arXiv 2401.16420)
split in two: :func:`ixc2_collate_fn` pads the tokenized samples
(:mod:`.training_format`) and stacks their images; :func:`expand_images`,
given the model's token embeddings and the visual tokens, builds
``inputs_embeds``, the Partial-LoRA mask ``im_mask``, the labels and the
attention mask, each sequence cut to ``max_length`` (4096 in IXC2 and
ChartMoE) and right-padded.
"""
import torch

from .training_format import IGNORE_INDEX, IMAGE_TOKEN_INDEX

PAD_ID = 2  # </s>, IXC2's pad token


def ixc2_collate_fn(instances, pad_index=PAD_ID):
    """``[{'input_ids', 'labels', 'pixel_values' [n_i, 3, S, S]}, ...]`` ->
    ``{'data': {'input_ids' [B, L], 'labels' [B, L] (-100 padded),
    'attention_mask' [B, L] bool, 'pixel_values' [sum n_i, 3, S, S] or
    None}, 'data_samples': None}``; the images in sample order."""
    length = max(len(x['input_ids']) for x in instances)
    batch = len(instances)
    input_ids = torch.full((batch, length), pad_index, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.bool)
    for i, x in enumerate(instances):
        n = len(x['input_ids'])
        input_ids[i, :n] = torch.as_tensor(x['input_ids'])
        labels[i, :n] = torch.as_tensor(x['labels'])
        attention_mask[i, :n] = True
    images = [x['pixel_values'] for x in instances
              if x.get('pixel_values') is not None]
    return {'data': {
        'input_ids': input_ids, 'labels': labels,
        'attention_mask': attention_mask,
        'pixel_values': torch.cat(images) if images else None},
        'data_samples': None}


def expand_images(embed_tokens, input_ids, labels, attention_mask,
                  image_tokens, max_length):
    """Build the model's inputs from a collated batch.

    ``embed_tokens``: ids ``[n]`` -> ``[n, D]``; ``input_ids`` / ``labels``
    / ``attention_mask`` ``[B, L]`` (:func:`ixc2_collate_fn`);
    ``image_tokens [N, T, D]``: the visual tokens of the batch's images in
    order (None without images). Each :data:`IMAGE_TOKEN_INDEX` becomes
    ``T`` positions (``im_mask`` True, labels -100). Returns
    ``(inputs_embeds [B, L', D], im_mask [B, L'] bool, labels [B, L'],
    attention_mask [B, L'] bool)``, ``L' <= max_length``, right-padded.
    """
    sequences = []
    next_image = 0
    for ids, labs, keep in zip(input_ids, labels, attention_mask):
        ids, labs = ids[keep], labs[keep]
        text = embed_tokens(ids.clamp(min=0))
        places = (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
        embeds, masks, targets, start = [], [], [], 0
        for place in places + [len(ids)]:
            embeds.append(text[start:place])
            masks.append(torch.zeros(place - start, dtype=torch.bool))
            targets.append(labs[start:place])
            if place < len(ids):
                if image_tokens is None or next_image >= len(image_tokens):
                    raise ValueError('the batch has more image placeholders '
                                     'than images')
                visual = image_tokens[next_image].to(text.dtype)
                next_image += 1
                embeds.append(visual)
                masks.append(torch.ones(len(visual), dtype=torch.bool))
                targets.append(labs.new_full((len(visual),), IGNORE_INDEX))
            start = place + 1
        sequences.append((torch.cat(embeds)[:max_length],
                          torch.cat(masks)[:max_length],
                          torch.cat(targets)[:max_length]))
    if image_tokens is not None and next_image != len(image_tokens):
        raise ValueError(f'{len(image_tokens)} images for {next_image} image '
                         'placeholders')
    length = max(len(e) for e, _, _ in sequences)
    batch, width = len(sequences), sequences[0][0].shape[-1]
    device = sequences[0][0].device
    inputs_embeds = sequences[0][0].new_zeros((batch, length, width))
    im_mask = torch.zeros((batch, length), dtype=torch.bool, device=device)
    out_labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long,
                            device=device)
    out_attention = torch.zeros((batch, length), dtype=torch.bool,
                                device=device)
    for i, (embeds, mask, targets) in enumerate(sequences):
        n = len(embeds)
        inputs_embeds[i, :n] = embeds
        im_mask[i, :n] = mask.to(device)
        out_labels[i, :n] = targets
        out_attention[i, :n] = True
    return inputs_embeds, im_mask, out_labels, out_attention
