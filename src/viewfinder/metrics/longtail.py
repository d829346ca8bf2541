"""Long-tail evaluation views: head/medium/tail accuracy and the most confident mistakes.

On an imbalanced training set the overall accuracy is carried by the frequent classes, so a model
that ignores its rare classes can still look good. Splitting per-class recall by training
frequency ("head", "medium", "tail"), as the long-tail literature reports it, shows where the
errors are; the grid of confident mistakes shows what they look like (often label noise, or a
rare class swallowed by a similar frequent one).

Everything here is plain numpy on already-computed numbers (a confusion matrix, probabilities),
so it works the same on the output of any run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from viewfinder.data.images import load_image
from viewfinder.errors import BadImageError, UserError

GROUPS: tuple[str, ...] = ("head", "medium", "tail")
_GRID_COLUMNS = 4
_THUMBNAIL_PIXELS = 256
_MAX_NAME_CHARS = 18


# --- Frequency groups ----------------------------------------------------------------------------


def frequency_groups(
    train_counts: Sequence[int], *, many: int | None = None, few: int | None = None
) -> list[str]:
    """Label each class "head", "medium" or "tail" by its number of training samples.

    With ``many`` and ``few`` (absolute thresholds, as Liu et al. 2019 "Large-scale long-tailed
    recognition in an open world" do with 100 and 20 on ImageNet-LT): head is ``count > many``,
    tail is ``count < few``, the rest is medium; a group may then be empty. Use this to compare
    with published numbers.

    Without them the classes are split into frequency thirds, because a user's data set has no
    agreed thresholds and 100/20 would put every class of a small set in the tail. Classes are
    ranked by count (descending, ties by class index, so the result is deterministic); head and
    tail each take ``round(C / 3)`` classes and medium the rest, so a C == 2 set is head + tail and
    every group has a class when C >= 3. A cut that would separate classes with equal counts is
    moved to the nearest count change (fewest tie splits first, then the smallest move; equal
    moves favour medium) as long as every group keeps a class; a tie run that cannot be kept
    whole (e.g. all counts equal) is split by class index.
    """
    counts = [int(count) for count in train_counts]
    if any(count < 0 for count in counts):
        raise ValueError(f"train_counts must be non-negative, got {counts}")
    if many is not None or few is not None:
        return _absolute_groups(counts, many, few)
    num_classes = len(counts)
    if num_classes <= 1:
        return ["head"] * num_classes
    order = sorted(range(num_classes), key=lambda index: (-counts[index], index))
    ranked = [counts[index] for index in order]
    head_end, tail_start = _choose_cuts(ranked)
    groups = [""] * num_classes
    for position, index in enumerate(order):
        if position < head_end:
            groups[index] = "head"
        elif position < tail_start:
            groups[index] = "medium"
        else:
            groups[index] = "tail"
    return groups


def _absolute_groups(counts: list[int], many: int | None, few: int | None) -> list[str]:
    """Fixed thresholds: head if count > many, tail if count < few (see ``frequency_groups``)."""
    if many is None or few is None:
        raise UserError("long-tail groups need both 'many' and 'few' thresholds, or neither")
    if few > many + 1:
        raise UserError(
            f"few={few} is above many + 1 = {many + 1}: a class could be both head and tail; "
            "use few <= many (e.g. many=100, few=20)"
        )
    return ["head" if c > many else "tail" if c < few else "medium" for c in counts]


def _choose_cuts(ranked: list[int]) -> tuple[int, int]:
    """Head/medium and medium/tail cut positions in the descending counts (C >= 2).

    Candidates are the ideal thirds and the two nearest count changes on each side of them; that
    set always contains the best pair (a tighter cut would be nearer), so no full search is needed.
    """
    num_classes = len(ranked)
    edge = max(1, (num_classes + 1) // 3)  # round(C / 3): C / 3 never ends in .5
    ideal = (edge, num_classes - edge)
    changes = [p for p in range(1, num_classes) if ranked[p - 1] != ranked[p]]
    low = 1
    high = num_classes - 1
    best: tuple[tuple[int, int, int, int], tuple[int, int]] | None = None
    for head_end in _cut_candidates(ideal[0], changes):
        for tail_start in _cut_candidates(ideal[1], changes):
            valid = head_end <= tail_start if num_classes == 2 else head_end < tail_start
            if not (low <= head_end and tail_start <= high and valid):
                continue
            splits = (head_end not in changes) + (tail_start not in changes)
            moved = abs(head_end - ideal[0]) + abs(tail_start - ideal[1])
            key = (splits, moved, head_end, -tail_start)  # equal moves: smaller head and tail
            if best is None or key < best[0]:
                best = (key, (head_end, tail_start))
    assert best is not None  # the ideal pair is always valid for C >= 2
    return best[1]


def _cut_candidates(ideal: int, changes: list[int]) -> set[int]:
    """The ideal cut plus the two nearest count changes at or below it and at or above it."""
    below = [p for p in changes if p <= ideal][-2:]
    above = [p for p in changes if p >= ideal][:2]
    return {ideal, *below, *above}


# --- Accuracy per group --------------------------------------------------------------------------


def group_accuracy(confusion: np.ndarray | torch.Tensor, groups: list[str]) -> dict[str, float]:
    """Mean per-class recall within each frequency group (rows of ``confusion`` = true class).

    A per-class mean, not pooled samples, so one big head class cannot hide the others — the usual
    "many/medium/few-shot accuracy" of long-tail papers. Classes with no true samples have no
    recall and are left out of their group's mean; a group with no such classes is omitted, so
    the keys are a subset of ``head_accuracy``, ``medium_accuracy``, ``tail_accuracy``.
    """
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    matrix = np.asarray(confusion, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {matrix.shape}")
    if len(groups) != matrix.shape[0]:
        raise ValueError(f"got {len(groups)} groups for a {matrix.shape[0]}-class confusion matrix")
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown group name(s) {unknown}; expected {', '.join(GROUPS)}")
    support = matrix.sum(axis=1)
    recall = np.divide(np.diag(matrix), support, out=np.zeros_like(support), where=support > 0)
    labels = np.asarray(groups)
    result: dict[str, float] = {}
    for group in GROUPS:
        members = (labels == group) & (support > 0)
        if members.any():
            result[f"{group}_accuracy"] = float(recall[members].mean())
    return result


# --- Confident mistakes --------------------------------------------------------------------------


def confident_mistakes(probs: np.ndarray, targets: np.ndarray, k: int = 16) -> list[int]:
    """Indices of the ``k`` wrong predictions the model was most sure of (ties by index).

    The prediction is the arg-max class (first on ties) and the confidence is its probability.
    These are the samples worth looking at first: a confident mistake is often a wrong label.
    """
    probs, targets = _check_predictions(probs, targets)
    if k <= 0:
        return []
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(targets)), predicted]
    wrong = np.flatnonzero(predicted != targets)
    order = np.lexsort((wrong, -confidence[wrong]))  # last key is primary
    return [int(index) for index in wrong[order][:k]]


def _check_predictions(probs: object, targets: object) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) float probabilities and (N,) int targets in range, or ValueError."""
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().float().cpu().numpy()
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    probs_array = np.asarray(probs, dtype=np.float64)
    targets_array = np.asarray(targets).astype(np.int64)
    if probs_array.ndim != 2:
        raise ValueError(f"probs must have shape (N, C), got {probs_array.shape}")
    if targets_array.shape != (probs_array.shape[0],):
        raise ValueError(
            f"targets must have shape ({probs_array.shape[0]},) to match probs, "
            f"got {targets_array.shape}"
        )
    if targets_array.size and (
        targets_array.min() < 0 or targets_array.max() >= probs_array.shape[1]
    ):
        raise ValueError(f"targets must be class indices in [0, {probs_array.shape[1]})")
    return probs_array, targets_array


def plot_confident_mistakes(
    paths: Sequence[Path],
    probs: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
    out_path: str | Path,
    k: int = 16,
) -> Path | None:
    """Save a grid (up to 4 columns) of the ``k`` most confident mistakes; None if there are none.

    Each tile is titled "true: X / pred: Y (0.97)". An image that cannot be read becomes a blank
    tile stating why, so one moved or corrupt file never costs the user the whole report. Like
    ``plot_confusion_matrix`` this draws on a bare Agg ``Figure``: headless, no global backend.
    """
    probs_array, targets_array = _check_predictions(probs, targets)
    if len(paths) != len(targets_array):
        raise ValueError(f"got {len(paths)} image paths for {len(targets_array)} predictions")
    if len(class_names) != probs_array.shape[1]:
        raise ValueError(f"got {len(class_names)} class names for {probs_array.shape[1]} classes")
    indices = confident_mistakes(probs_array, targets_array, k)
    if not indices:
        return None
    columns = min(_GRID_COLUMNS, len(indices))
    rows = math.ceil(len(indices) / columns)
    fig = Figure(figsize=(3.0 * columns, 3.3 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for tile, index in enumerate(indices):
        ax = fig.add_subplot(rows, columns, tile + 1)
        predicted = int(probs_array[index].argmax())
        true_name = _shorten(str(class_names[targets_array[index]]))
        pred_name = _shorten(str(class_names[predicted]))
        confidence = probs_array[index, predicted]
        ax.set_title(f"true: {true_name} / pred: {pred_name} ({confidence:.2f})", fontsize=8)
        _draw_tile(ax, Path(paths[index]))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, format="png")
    return out


def _draw_tile(ax: Axes, path: Path) -> None:
    """Show a thumbnail of ``path``, or a blank tile with the reason it could not be read."""
    ax.set_xticks([])
    ax.set_yticks([])
    try:
        image = load_image(path)
    except BadImageError as error:
        reason = f"{path.name}: {error.reason}"
    except OSError as error:  # e.g. permission denied before PIL sees the file
        reason = f"{path.name}: {error.strerror or error}"
    else:
        image.thumbnail((_THUMBNAIL_PIXELS, _THUMBNAIL_PIXELS))
        ax.imshow(np.asarray(image))
        return
    ax.set_facecolor("white")
    ax.text(0.5, 0.5, _wrap(reason), ha="center", va="center", fontsize=7)


def _shorten(name: str) -> str:
    """Cut long class names so a tile title fits its column."""
    if len(name) <= _MAX_NAME_CHARS:
        return name
    return name[: _MAX_NAME_CHARS - 1] + "…"


def _wrap(text: str, width: int = 32) -> str:
    """Break a failure reason into short lines that fit inside a tile."""
    return "\n".join(text[start : start + width] for start in range(0, len(text), width))
