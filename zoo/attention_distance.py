"""Mean attention distance of a ViT, per block and head: how far, in pixels, a patch looks on average.

For head h of block l, with A the patch-to-patch attention (the CLS row and column cut off, rows re-normalised) and
d(q, k) the distance between the centres of patches q and k:

    distance[l][h] = mean over images and query patches q of  Σ_k A[q, k] · d(q, k)

(Dosovitskiy et al. 2021, Fig. 7; the MAE-vs-supervised contrast Hybrid Distill builds on: MIM teachers keep local
heads, i.e. short distances, in every block, supervised ones look globally in the late blocks.) Beside it, the
normalised entropy of the same rows, mean over images and query patches of H(A[q]) / log P: 1 for uniform attention,
lower for attention that picks out a few patches, near or far (the "diversity" the paper wants from MIM teachers).
A staged run of ``hybrid_distill`` writes both for its teachers and its student after each stage (the record's
``stages[k].diagnostics.attention_distance`` and ``attention_entropy``); ``write_png`` draws the distances, byte for
byte the same from the same records (``zoo.figures``).
"""

import math
from pathlib import Path

import torch
from torch import nn

from zoo.archs.vit import AttentionTaps, depth, patch_grid, prefix_tokens
from zoo.atomic import atomic_write_bytes
from zoo.methods.hybrid_losses import without_prefix


def patch_distances(grid: tuple[int, int], patch: tuple[int, int]) -> torch.Tensor:
    """[P, P] Euclidean distances in pixels between the centres of the patches of a ``grid`` (rows, columns)."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    centres = torch.stack([rows.flatten() * patch[0], cols.flatten() * patch[1]], dim=1).float()
    return torch.cdist(centres, centres)


def mean_distance(attention: torch.Tensor, distances: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """[h]: the mean attention distance of each head of one block's attention [B, h, N, N]."""
    patches = without_prefix(attention.float(), prefix)
    return (patches * distances).sum(-1).mean(dim=(0, 2))


def mean_entropy(attention: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """[h]: the entropy of each head's patch-to-patch rows over log P (1: uniform), mean over images and queries."""
    patches = without_prefix(attention.float(), prefix)
    entropy = -(patches * patches.clamp_min(1e-12).log()).sum(-1)
    return entropy.mean(dim=(0, 2)) / math.log(patches.shape[-1])


@torch.no_grad()
def attention_statistics(model: nn.Module, images: torch.Tensor) -> dict[str, list[list[float]]]:
    """{"distance": [block][head] mean attention distances, "entropy": [block][head] normalised entropies} of
    ``model`` (eval mode for the pass, restored after) on ``images``."""
    blocks = list(range(1, depth(model) + 1))
    taps = AttentionTaps(model, blocks)
    was_training = model.training
    try:
        model.eval()
        model(images)
        distances = patch_distances(patch_grid(model), tuple(model.patch_embed.patch_size)).to(images.device)
        prefix = prefix_tokens(model)
        return {"distance": [[round(float(v), 4) for v in mean_distance(taps.probs[n], distances, prefix)]
                             for n in blocks],
                "entropy": [[round(float(v), 4) for v in mean_entropy(taps.probs[n], prefix)] for n in blocks]}
    finally:
        model.train(was_training)
        taps.remove()


def attention_distances(model: nn.Module, images: torch.Tensor) -> list[list[float]]:
    """[block][head] mean attention distances of ``model`` on ``images``."""
    return attention_statistics(model, images)["distance"]


def distances_of(record) -> dict[str, list[list[float]]]:
    """Every model's distances in a record, named ``<model>@<stage>`` (e.g. ``student@distil``); {} without any."""
    found = {}
    for stage in record.stages:
        for model, layers in ((stage.get("diagnostics") or {}).get("attention_distance") or {}).items():
            found[f"{model}@{stage['name']}"] = layers
    return found


def figure(distances: dict[str, list[list[float]]], title: str):
    """One panel per model: each head's distance by block (dots) and the mean over heads (line)."""
    from zoo.figures import pyplot

    names = sorted(distances)
    fig, axes = pyplot().subplots(1, len(names), figsize=(3.2 * len(names), 3.2), dpi=100, squeeze=False,
                                  sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        layers = distances[name]
        blocks = list(range(1, len(layers) + 1))
        for block, heads in zip(blocks, layers, strict=True):
            ax.scatter([block] * len(heads), heads, s=12, color="C0", alpha=0.6)
        ax.plot(blocks, [sum(h) / len(h) for h in layers], color="C3", marker="o", linewidth=1.2)
        ax.set(title=name, xlabel="block", xticks=blocks)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean attention distance (px)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_png(record, path: Path) -> bool:
    """The record's attention distances as a PNG beside a leaderboard; False (nothing written) when it has none."""
    from zoo.figures import figure_bytes

    distances = distances_of(record)
    if not distances:
        return False
    title = f"{record.task}: mean attention distance per block and head ({record.method}, seed {record.seed})"
    atomic_write_bytes(Path(path), figure_bytes(figure(distances, title), "png"))
    return True


BOARD_MEASURES = (("attention_distance", "mean attention distance (px)"),
                  ("attention_entropy", "normalised attention entropy"))


def board_statistics(rows) -> dict[str, dict[str, list[float]]]:
    """For a leaderboard: per measure, the mean over heads by block of each measured row's student (its lowest
    seed's run, at the first stage that measured it: after distillation, before fine-tuning) and, once, of each
    teacher, named ``teacher <role>``; {} when no row has any."""
    found: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if row.source != "measured" or row.variant == "teacher" or not row.records:
            continue
        record = min(row.records, key=lambda r: r.seed)
        stage = next((s for s in record.stages if (s.get("diagnostics") or {}).get("attention_distance")), None)
        if stage is None:
            continue
        for measure, _ in BOARD_MEASURES:
            for model, layers in (stage["diagnostics"].get(measure) or {}).items():
                name = row.variant if model == "student" else f"teacher {model.removesuffix('_teacher')}"
                found.setdefault(measure, {}).setdefault(name, [sum(heads) / len(heads) for heads in layers])
    return found


def board_figure(statistics: dict[str, dict[str, list[float]]], task: str):
    """One panel per measure, a line per model over the blocks (teachers dashed)."""
    from zoo.figures import pyplot

    measures = [(key, label) for key, label in BOARD_MEASURES if key in statistics]
    fig, axes = pyplot().subplots(1, len(measures), figsize=(5.2 * len(measures) + 1.8, 3.6), dpi=100,
                                  squeeze=False)
    for ax, (key, label) in zip(axes[0], measures, strict=True):
        for name, values in sorted(statistics[key].items()):
            blocks = list(range(1, len(values) + 1))
            ax.plot(blocks, values, marker="o", linewidth=1.2, label=name,
                    linestyle="--" if name.startswith("teacher ") else "-")
        ax.set(xlabel="block", ylabel=label)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")  # beside the panels, never over a line
    fig.suptitle(f"{task}: attention per block, mean over heads (seed 0 of each variant, after distillation)")
    fig.tight_layout(rect=(0, 0, 1 - 1.8 / fig.get_figwidth(), 1))
    return fig


def write_board_png(rows, task: str, path: Path) -> bool:
    """The board's attention statistics as a PNG beside it; False (nothing written) when its rows have none."""
    from zoo.figures import figure_bytes

    statistics = board_statistics(rows)
    if not statistics:
        return False
    atomic_write_bytes(Path(path), figure_bytes(board_figure(statistics, task), "png"))
    return True
