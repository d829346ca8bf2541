"""Classification metrics: a thin wrapper over torchmetrics, a confusion-matrix plot, a text report.

torchmetrics does the counting so the numbers sync across processes in multi-GPU runs; this module
only picks the conventions and turns tensors into plain Python values.

Conventions (chosen to match scikit-learn's defaults, which is what Kaggle/Dacon scorers call):

- ``accuracy``: fraction of samples whose top-1 prediction is the target (torchmetrics "micro").
- ``top5_accuracy``: fraction whose target is among the ``min(5, num_classes)`` highest logits.
- ``macro_f1``: unweighted mean of per-class F1 over the classes that occur in the targets *or*
  the predictions. A class absent from both is left out, exactly as ``sklearn.metrics.f1_score(y,
  p, average="macro")`` does (its labels default to ``unique(y ∪ p)``); torchmetrics agrees. A
  class seen on only one side counts with F1 = 0. (Passing ``labels=range(C)`` to sklearn would
  instead count absent classes as 0 and lower the score; scorers do not do that.)
- ``weighted_f1``: per-class F1 weighted by support (true count), as sklearn's
  ``average="weighted"``; absent classes weigh 0, so they never matter here.
- ``balanced_accuracy``: sklearn's ``balanced_accuracy_score``: mean recall over the classes that
  occur in the targets. This is macro recall whenever every predicted class also occurs in the
  targets; when the model predicts a class that never occurs, macro recall would count that class
  with recall 0 but balanced accuracy (sklearn's and ours) does not.
- Per-class precision/recall/F1 are 0 where undefined (0/0), like sklearn's ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

TOP_K = 5
_MAX_LABEL_CHARS = 24
_REPORT_KEYS = ("precision", "recall", "f1")
_REPORT_HEADERS = ("precision", "recall", "f1-score")


class ClassificationMetrics:
    """Accumulates logits/targets over an epoch; compute() gives the summary numbers.

    Every public read (``compute``, ``per_class``, ``confusion_matrix``) computes the whole
    collection, so in a multi-process run all ranks sync the same states in the same order no
    matter which method the caller uses.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if class_names is None:
            class_names = [str(index) for index in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(
                f"got {len(class_names)} class names for num_classes={num_classes}; "
                "pass one name per class, in label-index order"
            )
        self.num_classes = num_classes
        self.class_names = [str(name) for name in class_names]
        self.top_k = min(TOP_K, num_classes)
        c = num_classes
        # compute_groups=False: automatic groups merge metrics whose states happen to be equal
        # after the first batch, so an all-correct first batch silently turns top-k accuracy into
        # top-1 for the rest of the epoch (torchmetrics issues #2596, #2916). The few extra
        # bincounts per batch cost nothing next to a forward pass.
        self._metrics = MetricCollection(
            {
                "accuracy": MulticlassAccuracy(c, average="micro"),
                "topk_accuracy": MulticlassAccuracy(c, top_k=self.top_k, average="micro"),
                "macro_f1": MulticlassF1Score(c, average="macro"),
                "weighted_f1": MulticlassF1Score(c, average="weighted"),
                "precision": MulticlassPrecision(c, average=None),
                "recall": MulticlassRecall(c, average=None),
                "f1": MulticlassF1Score(c, average=None),
                "confusion": MulticlassConfusionMatrix(c),
            },
            compute_groups=False,
        )

    def to(self, device: torch.device | str) -> ClassificationMetrics:
        """Move the metric states next to the model outputs (they must share a device)."""
        self._metrics = self._metrics.to(device)
        return self

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch: ``logits`` (N, C) of any float dtype, ``targets`` (N,) class indices."""
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have shape (N, {self.num_classes}), got {tuple(logits.shape)}"
            )
        if targets.shape != (logits.shape[0],):
            raise ValueError(
                f"targets must have shape ({logits.shape[0]},) to match logits, "
                f"got {tuple(targets.shape)}"
            )
        # float32 so bf16/fp16 logits take the same, well-supported argmax/topk kernels; the cast
        # is exact, so tie-breaking is unchanged.
        self._metrics.update(logits.detach().float(), targets.detach().long())

    def compute(self) -> dict[str, float]:
        """Summary numbers over everything seen since the last reset (see module docstring)."""
        values = self._computed()
        return {
            "accuracy": float(values["accuracy"]),
            "top5_accuracy": float(values["topk_accuracy"]),
            "macro_f1": float(values["macro_f1"]),
            "weighted_f1": float(values["weighted_f1"]),
            "balanced_accuracy": _balanced_accuracy(values["recall"], values["confusion"]),
        }

    def per_class(self) -> list[dict[str, float | str | int]]:
        """One row per class: class, precision, recall, f1, support (true count), predicted.

        ``predicted`` (how often the class was predicted) tells a class that was never predicted
        nor present apart from one that was only predicted; the report needs it for its macro avg.
        """
        values = self._computed()
        matrix = values["confusion"].cpu()
        support = matrix.sum(dim=1).tolist()
        predicted = matrix.sum(dim=0).tolist()
        precision = values["precision"].cpu().tolist()
        recall = values["recall"].cpu().tolist()
        f1 = values["f1"].cpu().tolist()
        return [
            {
                "class": name,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "predicted": int(predicted[i]),
            }
            for i, name in enumerate(self.class_names)
        ]

    def confusion_matrix(self) -> np.ndarray:
        """(C, C) int64 counts; rows are the true class, columns the predicted class."""
        return self._computed()["confusion"].cpu().numpy().astype(np.int64)

    def reset(self) -> None:
        """Forget everything seen so far (call at the start of each epoch)."""
        self._metrics.reset()

    def _computed(self) -> dict[str, torch.Tensor]:
        """Compute (and sync) all metrics; refuse to report numbers over zero samples."""
        values = self._metrics.compute()
        if int(values["confusion"].sum()) == 0:
            raise RuntimeError("ClassificationMetrics has no samples yet: call update() first")
        return values


def _balanced_accuracy(recall: torch.Tensor, confusion: torch.Tensor) -> float:
    """Mean recall over classes present in the targets (sklearn's balanced_accuracy_score)."""
    present = confusion.sum(dim=1) > 0
    return float(recall[present].mean())


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    normalize: bool = False,
    title: str = "",
) -> Path:
    """Save the confusion matrix as a PNG (rows = true, columns = predicted) and return its path.

    Uses a bare ``Figure`` on the Agg canvas rather than pyplot: works headless, never changes the
    process-wide backend (safe inside notebooks and the server) and leaves no open pyplot figure.
    With ``normalize`` each row is shown as % of that class's samples (rows with no samples stay 0).
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got shape {matrix.shape}")
    n = matrix.shape[0]
    if len(class_names) != n:
        raise ValueError(f"got {len(class_names)} class names for a {n}x{n} confusion matrix")
    values, texts = _cell_values(matrix, normalize)
    size, cell_font, label_font = _layout(n)
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    vmax = 100.0 if normalize else max(float(values.max()), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02)
    colorbar.set_label("% of true class" if normalize else "samples", fontsize=label_font)
    _draw_cells(ax, values, texts, vmax, cell_font)
    _label_axes(ax, class_names, label_font)
    default_title = "Confusion matrix (row %)" if normalize else "Confusion matrix (counts)"
    ax.set_title(title or default_title, fontsize=label_font + 2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path


def _cell_values(matrix: np.ndarray, normalize: bool) -> tuple[np.ndarray, list[list[str]]]:
    """Numbers to colour by and the text to write in each cell."""
    if not normalize:
        counts = matrix.astype(np.int64)
        return counts.astype(float), [[str(v) for v in row] for row in counts]
    totals = matrix.sum(axis=1, keepdims=True).astype(float)
    percent = np.divide(
        100.0 * matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0
    )
    fmt = "{:.1f}" if matrix.shape[0] <= 10 else "{:.0f}"
    return percent, [[fmt.format(v) for v in row] for row in percent]


def _layout(n: int) -> tuple[tuple[float, float], float, float]:
    """Figure size (inches), cell font and label font (points): grow the figure, shrink the text.

    The width adds room for the colour bar and the row labels so the square matrix fills the
    height; at 40 classes a cell is about 0.4 in, enough for a 4-digit count at 7 pt.
    """
    side = float(np.clip(3.0 + 0.4 * n, 6.0, 19.0))
    cell_font = float(np.clip(13.0 - 0.15 * n, 7.0, 11.0))
    label_font = float(np.clip(12.0 - 0.12 * n, 7.5, 11.0))
    return (side + 1.5, side), cell_font, label_font


def _draw_cells(
    ax: Axes, values: np.ndarray, texts: list[list[str]], vmax: float, font: float
) -> None:
    """Write each cell's text, white on dark cells; empty zero cells when the matrix is large."""
    n = values.shape[0]
    for row in range(n):
        for col in range(n):
            if n > 15 and values[row, col] == 0:
                continue  # a large grid of "0"s hides the errors; the colour already says 0
            dark = values[row, col] > 0.5 * vmax
            ax.text(
                col,
                row,
                texts[row][col],
                ha="center",
                va="center",
                fontsize=font,
                color="white" if dark else "black",
            )


def _label_axes(ax: Axes, class_names: Sequence[str], font: float) -> None:
    """Class names on both axes (long names shortened), x labels turned so they do not overlap."""
    names = [_shorten(str(name)) for name in class_names]
    ticks = list(range(len(names)))
    ax.set_xticks(ticks, labels=names, fontsize=font)
    ax.set_yticks(ticks, labels=names, fontsize=font)
    vertical = len(names) > 10 or max(len(name) for name in names) > 6
    if vertical:
        ax.tick_params(axis="x", labelrotation=90)
    ax.set_xlabel("Predicted", fontsize=font + 1)
    ax.set_ylabel("True", fontsize=font + 1)


def _shorten(name: str) -> str:
    """Cut very long class names so they do not squeeze the matrix out of the figure."""
    if len(name) <= _MAX_LABEL_CHARS:
        return name
    return name[: _MAX_LABEL_CHARS - 1] + "…"


def format_per_class_report(
    rows: Sequence[Mapping[str, float | str | int]], *, digits: int = 4
) -> str:
    """Fixed-width table like sklearn's classification_report, from ``per_class()`` rows.

    The macro avg leaves out classes with no targets and no predictions, so it equals
    ``compute()["macro_f1"]``; a footnote says how many were left out.
    """
    if not rows:
        raise ValueError("no per-class rows to report")
    total = sum(int(row["support"]) for row in rows)
    if total == 0:
        raise ValueError("per-class rows have zero total support; nothing to report")
    present = [row for row in rows if int(row["support"]) > 0 or int(row["predicted"]) > 0]
    macro = [sum(float(row[k]) for row in present) / len(present) for k in _REPORT_KEYS]
    weighted = [
        sum(float(row[k]) * int(row["support"]) for row in rows) / total for k in _REPORT_KEYS
    ]
    accuracy = weighted[1]  # support-weighted recall = correct / total for single-label data

    name_width = max(len("weighted avg"), *(len(str(row["class"])) for row in rows))
    column = max(10, digits + 5)
    header = " " * name_width + "".join(f"{h:>{column}}" for h in _REPORT_HEADERS)
    lines = [header + f"{'support':>10}", ""]
    for row in rows:
        numbers = [float(row[k]) for k in _REPORT_KEYS]
        lines.append(
            _report_line(str(row["class"]), numbers, int(row["support"]), name_width, digits)
        )
    lines.append("")
    lines.append(_report_line("accuracy", [None, None, accuracy], total, name_width, digits))
    lines.append(_report_line("macro avg", macro, total, name_width, digits))
    lines.append(_report_line("weighted avg", weighted, total, name_width, digits))
    left_out = len(rows) - len(present)
    if left_out:
        lines.append(
            f"(macro avg leaves out {left_out} class(es) with no targets and no predictions, "
            "as sklearn does)"
        )
    return "\n".join(lines)


def _report_line(
    name: str, numbers: Sequence[float | None], support: int, name_width: int, digits: int
) -> str:
    """One right-aligned report row; ``None`` leaves a cell blank, as on sklearn's accuracy line."""
    column = max(10, digits + 5)
    cells = "".join(
        " " * column if value is None else f"{value:>{column}.{digits}f}" for value in numbers
    )
    return f"{name:>{name_width}}{cells}{support:>10}"


class ClassifyMetrics:
    """The classify task's accumulator: ``ClassificationMetrics`` plus the long-tail views.

    Adds accuracy on head/medium/tail classes (``groups``, split by training frequency), the
    coarse-level accuracy and macro F1 when fine labels are trained with a label map (``coarse``:
    each class's coarse label), and keeps each image's probabilities for the mistakes grid.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: list[str],
        groups: list[str],
        coarse: list[str] | None = None,
    ) -> None:
        self.inner = ClassificationMetrics(num_classes, class_names)
        self.groups, self.coarse = groups, coarse
        self.probs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.indices: list[torch.Tensor] = []

    def to(self, device: torch.device) -> ClassifyMetrics:
        self.inner.to(device)
        return self

    def update(self, outputs: torch.Tensor, batch: dict[str, Any]) -> None:
        self.inner.update(outputs.float(), batch["target"])
        self.probs.append(outputs.float().softmax(dim=1).cpu())
        self.targets.append(batch["target"].cpu())
        self.indices.append(batch["index"].cpu())

    def compute(self) -> dict[str, float]:
        from viewfinder.metrics.longtail import group_accuracy
        from viewfinder.models.rebalance import macro_f1

        values = self.inner.compute()
        matrix = self.inner.confusion_matrix()
        if self.groups:
            values.update(group_accuracy(matrix, self.groups))
        if self.coarse:
            names = sorted(set(self.coarse))
            onehot = np.zeros((len(self.coarse), len(names)))
            onehot[np.arange(len(self.coarse)), [names.index(c) for c in self.coarse]] = 1
            coarse = onehot.T @ np.asarray(matrix, dtype=np.float64) @ onehot
            values["coarse_accuracy"] = float(np.trace(coarse) / max(coarse.sum(), 1))
            values["coarse_macro_f1"] = macro_f1(coarse)
        return values
