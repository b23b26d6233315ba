"""Expert-routing analysis of a ChartMoE model (paper figures)."""
import os
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402
from xtuner.dataset.utils import expand2square  # noqa: E402

from ..fileio import atomic_write_json  # noqa: E402
from .routing_stats import RoutingChange, RoutingStats  # noqa: E402

EXPERT_COLOURS = ('#7f7f7f', '#1f77b4', '#2ca02c', '#d62728', '#9467bd',
                  '#ff7f0e', '#8c564b', '#e377c2')


def draw_expert_map(image_path, top1, expert_names, out_path):
    """Overlay the top-1 expert of each patch (``top1``: [T] ids, T a square
    number) on the chart as the model saw it (padded to a square)."""
    grid = int(round(len(top1)**0.5))
    image = expand2square(Image.open(image_path).convert('RGB'),
                          (255, 255, 255)).resize((448, 448))
    palette = [matplotlib.colors.to_rgb(c) for c in EXPERT_COLOURS]
    colours = np.array([palette[e % len(palette)] for e in np.asarray(top1)
                        ]).reshape(grid, grid, 3)
    fig, ax = plt.subplots(figsize=(5, 5.6), dpi=100)
    ax.imshow(image)
    ax.imshow(colours, alpha=0.45, extent=(0, 448, 448, 0),
              interpolation='nearest')
    ax.set_axis_off()
    ax.legend(handles=[Patch(color=EXPERT_COLOURS[i], label=name)
                       for i, name in enumerate(expert_names)],
              loc='upper center', bbox_to_anchor=(0.5, -0.01), ncol=4,
              fontsize=8, frameon=False)
    ax.set_title('top-1 expert per visual token', fontsize=9)
    fig.savefig(out_path, bbox_inches='tight')
    plt.close(fig)


def plot_distribution(stats, out_path):
    """Bar plot of the top-1 share and the top-k load of each expert."""
    names = stats['expert_names']
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.bar(x - 0.2, stats['top1_fraction'], 0.4, label='top-1 share',
           color=[EXPERT_COLOURS[i] for i in x])
    ax.bar(x + 0.2, stats['load'], 0.4, label='top-k load', color='#cccccc',
           edgecolor='#555555')
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylabel('fraction of visual tokens')
    ax.set_title(f"{stats['tokens']} tokens, entropy {stats['entropy']:.3f}, "
                 f"margin {stats['margin']:.3f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def analyse(chat, image_paths, out_dir, num_maps=4, batch_size=8):
    """Route every image; write ``routing_stats.json`` (data set statistics
    and per-image top-1 counts), ``expert_distribution.png`` and
    ``expert_map_<image>.png`` for the first ``num_maps`` images."""
    if not chat.is_moe:
        raise ValueError('the model has a dense projector: nothing to route')
    os.makedirs(out_dir, exist_ok=True)
    names = chat.expert_names
    stats = RoutingStats(len(names), names)
    per_image, maps = {}, []
    for start in range(0, len(image_paths), batch_size):
        batch = image_paths[start:start + batch_size]
        _, routing = chat.encode_images(batch)
        stats.update(routing.probs, routing.experts)
        for path, chosen in zip(batch, routing.experts[..., 0].cpu()):
            per_image[path] = np.bincount(
                chosen.numpy(), minlength=len(names)).tolist()
            if len(maps) < num_maps:
                name = osp.splitext(osp.basename(path))[0]
                maps.append(osp.join(out_dir, f'expert_map_{name}.png'))
                draw_expert_map(path, chosen, names, maps[-1])
    result = stats.result()
    result['per_image_top1_counts'] = per_image
    atomic_write_json(osp.join(out_dir, 'routing_stats.json'), result)
    plot_distribution(result, osp.join(out_dir, 'expert_distribution.png'))
    return result, maps


def plot_routing_change(change, out_path):
    """Top-1 transitions from model A to model B (heat map, row-normalised)
    and the share of each expert's tokens that moved elsewhere."""
    names = change['expert_names']
    counts = np.array(change['transitions'], dtype=float)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    image = left.imshow(shares, cmap='Blues', vmin=0, vmax=1)
    left.set_xticks(range(len(names)))
    left.set_xticklabels(names, rotation=30)
    left.set_yticks(range(len(names)))
    left.set_yticklabels(names)
    left.set_xlabel('top-1 expert, B')
    left.set_ylabel('top-1 expert, A')
    for (i, j), value in np.ndenumerate(shares):
        left.text(j, i, f'{value:.2f}', ha='center', va='center', fontsize=7)
    fig.colorbar(image, ax=left, fraction=0.046)
    moved = [change['per_expert'][n] or 0.0 for n in names]
    right.bar(range(len(names)), moved,
              color=[EXPERT_COLOURS[i % len(EXPERT_COLOURS)]
                     for i in range(len(names))])
    right.set_xticks(range(len(names)))
    right.set_xticklabels(names, rotation=30)
    right.set_ylim(0, 1)
    right.set_ylabel("share of A's tokens moved")
    right.set_title(f"top-1 changed {change['top1_changed']:.1%}, top-k set "
                    f"changed {change['set_changed']:.1%}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def compare_routing(chat_a, chat_b, image_paths, out_dir, batch_size=8):
    """Route the same images through two MoE models (two checkpoints of a
    run, say); write ``routing_change.json`` (:class:`RoutingChange`) and
    ``routing_change.png``. Returns the statistics."""
    for chat in (chat_a, chat_b):
        if not chat.is_moe:
            raise ValueError('both models need a MoE connector')
    names = chat_a.expert_names
    if len(names) != len(chat_b.expert_names):
        raise ValueError('the two connectors have different numbers of '
                         'experts')
    os.makedirs(out_dir, exist_ok=True)
    change = RoutingChange(len(names), names)
    for start in range(0, len(image_paths), batch_size):
        batch = image_paths[start:start + batch_size]
        change.update(chat_a.encode_images(batch)[1].experts,
                      chat_b.encode_images(batch)[1].experts)
    result = change.result()
    atomic_write_json(osp.join(out_dir, 'routing_change.json'), result)
    plot_routing_change(result, osp.join(out_dir, 'routing_change.png'))
    return result
