"""Post-hoc re-balancing of a trained classifier: logit adjustment and the τ-normalised classifier.

A classifier trained on long-tailed data learns the training class prior: its logits favour the
frequent classes, which costs the rare ones recall. Both methods here undo that *after* training,
with no retraining, and each has one knob (τ) that is tuned on the validation set:

- logit adjustment (Menon et al., ICLR 2021, "Long-tail learning via logit adjustment"):
  subtract ``τ · log prior`` from the logits;
- τ-normalisation (Kang et al., ICLR 2020, "Decoupling representation and classifier for
  long-tailed recognition"): divide each class's weight vector by its norm to the power τ, since
  frequent classes end up with larger weight norms.

At τ = 0 both leave the model unchanged, and ties in the search go to the smallest τ, so a model
that needs no correction keeps none.

Metrics for the search are computed here from a confusion matrix with the conventions of
``viewfinder.metrics.classification`` (that is, scikit-learn's), so a tuned score is the score the
evaluation reports:

- ``accuracy``: trace / total.
- ``macro_f1``: mean of per-class F1 = 2TP / (2TP + FP + FN) over the classes that occur in the
  targets *or* the predictions, exactly ``sklearn.metrics.f1_score(average="macro")`` with its
  default labels; a class seen on only one side counts with F1 = 0 (``zero_division=0``).
- ``weighted_f1``: per-class F1 weighted by true count (``average="weighted"``).
- ``balanced_accuracy``: mean recall over the classes that occur in the targets
  (``sklearn.metrics.balanced_accuracy_score``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from viewfinder.errors import UserError, did_you_mean

Counts = Sequence[int] | np.ndarray | torch.Tensor
MetricFn = Callable[[np.ndarray], float]

METRICS: tuple[str, ...] = ("macro_f1", "weighted_f1", "accuracy", "balanced_accuracy")
# 0.0, 0.1, ..., 2.0 (i / 10 is the double nearest each decimal). Both papers report their best τ
# inside this range; 0 is "no change".
DEFAULT_TAUS: tuple[float, ...] = tuple(i / 10 for i in range(21))


# --- Logit adjustment ------------------------------------------------------------------------


def log_prior(counts: Counts) -> torch.Tensor:
    """Log of the training class prior, ``log(n_c / sum n)``, as a float32 (C,) tensor.

    Counts are clamped to at least 1 first: a class with no training samples would otherwise have
    log prior -inf, and logit adjustment would make it win every prediction.
    """
    values = torch.as_tensor(counts, dtype=torch.float64)
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(
            f"counts must be a non-empty 1-D sequence, got shape {tuple(values.shape)}"
        )
    if bool((values < 0).any()):
        raise ValueError("counts must be non-negative")
    clamped = values.clamp(min=1.0)
    return torch.log(clamped / clamped.sum()).float()


def adjust_logits(logits: torch.Tensor, counts: Counts, tau: float) -> torch.Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021): ``logits - tau * log_prior(counts)``.

    ``logits`` is (N, C) or (C,); the result keeps its dtype and device. ``tau = 1`` is the
    Bayes-optimal correction for balanced error when the model's probabilities are calibrated.
    """
    prior = log_prior(counts)
    if logits.shape[-1] != prior.shape[0]:
        raise ValueError(
            f"logits have {logits.shape[-1]} classes but counts has {prior.shape[0]} entries"
        )
    return logits - tau * prior.to(device=logits.device, dtype=logits.dtype)


def tune_tau(
    logits: torch.Tensor,
    targets: torch.Tensor,
    counts: Counts,
    *,
    metric: str = "macro_f1",
    taus: Sequence[float] | None = None,
) -> tuple[float, list[tuple[float, float]]]:
    """Pick the logit-adjustment τ that maximises ``metric`` on validation logits.

    Returns ``(best_tau, [(tau, score), ...])`` with the history in ascending τ. Ties go to the
    smallest τ. Tune on validation data only: tuning on the test set would overstate the gain.
    """
    metric_fn(metric)  # an unknown metric fails before any work
    logits = logits.detach()
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    _check_targets(targets, logits.shape[0], logits.shape[1])
    prior = log_prior(counts).to(device=logits.device, dtype=torch.float32)
    if prior.shape[0] != logits.shape[1]:
        raise ValueError(
            f"logits have {logits.shape[1]} classes but counts has {prior.shape[0]} entries"
        )
    base = logits.float()

    def evaluate(tau: float) -> float:
        return score_logits(base - tau * prior, targets, metric)

    return _grid_search(evaluate, taus)


# --- Per-class bias (threshold moving) --------------------------------------------------------

# Offsets tried for each class, in logit units around the logit-adjusted start: -3.0 ... +3.0.
BIAS_GRID: tuple[float, ...] = tuple(i / 10 for i in range(-30, 31))


def tune_class_bias(
    logits: torch.Tensor,
    targets: torch.Tensor,
    counts: Counts,
    *,
    metric: str = "macro_f1",
    rounds: int = 4,
) -> tuple[torch.Tensor, float, list[dict[str, float]]]:
    """Per-class logit offsets that maximise ``metric`` on validation logits.

    Logit adjustment moves every class by ``-τ · log prior``: one knob, the right correction for
    balanced error. F-scores are not balanced error: their best decision rule moves each class's
    threshold on its own (Lipton et al. 2014, "Optimal thresholding of classifiers to maximize
    F1"). This starts from the tuned logit adjustment and does coordinate ascent, one class at a
    time over ``BIAS_GRID`` added to the start, for at most ``rounds`` passes. A change is kept
    only when it beats the best score so far, so ties keep the logit-adjusted offsets and the
    result never scores below logit adjustment on the validation set. Returns ``(offsets (C,),
    best score, history)``; history's first entry is the start (its ``tau``, its ``score`` and
    the unadjusted model's ``score_before``), then one entry per accepted change.
    """
    tau, table = tune_tau(logits, targets, counts, metric=metric)
    base = logits.detach().float()
    start = -tau * log_prior(counts).to(base.device)
    offsets = start.clone()

    def evaluate(candidate: torch.Tensor) -> float:
        return score_logits(base + candidate, targets, metric)

    best = evaluate(offsets)
    start_entry = {"score": best, "tau": tau, "score_before": table[0][1]}  # table[0]: tau = 0
    history = [{"round": 0, "class": -1, "offset": 0.0, **start_entry}]
    for round_index in range(1, rounds + 1):
        improved = False
        for c in range(base.shape[1]):
            for step in BIAS_GRID:
                candidate = offsets.clone()
                candidate[c] = start[c] + step
                value = evaluate(candidate)
                if value > best:
                    best, offsets, improved = value, candidate, True
                    history.append(
                        {"round": round_index, "class": c, "offset": step, "score": value}
                    )
        if not improved:
            break
    return offsets.cpu(), best, history


# --- τ-normalised classifier -----------------------------------------------------------------


def tau_normalize(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """Kang et al.'s τ-normalised classifier: each row ``w_c / ||w_c|| ** tau``.

    ``weight`` is the (C, D) matrix of the final linear layer. ``tau = 0`` is the identity and
    ``tau = 1`` gives unit-norm rows (a cosine classifier). All-zero rows are returned unchanged
    rather than divided by zero.
    """
    if weight.ndim != 2:
        raise ValueError(f"weight must have shape (C, D), got {tuple(weight.shape)}")
    norms = weight.norm(dim=1, keepdim=True)
    scale = torch.where(norms > 0, norms.pow(tau), torch.ones_like(norms))
    return weight / scale


def tune_tau_norm(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    metric: str = "macro_f1",
    taus: Sequence[float] | None = None,
) -> tuple[float, list[tuple[float, float]]]:
    """Pick the τ of ``tau_normalize`` that maximises ``metric`` on validation features.

    ``features`` are the (N, D) inputs of the final linear layer (pooled backbone features).
    Logits are ``features @ tau_normalize(weight, tau).T + bias``. The bias is added unchanged
    when given, so τ = 0 is exactly the trained model and the search can only pick a τ that beats
    the model as it is; pass ``bias=None`` to follow Kang et al., whose reference code drops it.
    Whatever is chosen here must be used the same way at prediction time.
    """
    metric_fn(metric)  # an unknown metric fails before any work
    features = features.detach().float()
    weight = weight.detach().float().to(features.device)
    if features.ndim != 2 or weight.ndim != 2 or features.shape[1] != weight.shape[1]:
        raise ValueError(
            f"features (N, D) and weight (C, D) must share D, got {tuple(features.shape)} "
            f"and {tuple(weight.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    offset = None if bias is None else bias.detach().float().to(features.device)
    _check_targets(targets, features.shape[0], weight.shape[0])

    def evaluate(tau: float) -> float:
        logits = features @ tau_normalize(weight, tau).T
        if offset is not None:
            logits = logits + offset
        return score_logits(logits, targets, metric)

    return _grid_search(evaluate, taus)


# --- Search and metrics ----------------------------------------------------------------------


def _grid_search(
    evaluate: Callable[[float], float], taus: Sequence[float] | None
) -> tuple[float, list[tuple[float, float]]]:
    """Score every τ in ascending order; keep the first best so ties go to the smallest τ."""
    grid = sorted({float(tau) for tau in (DEFAULT_TAUS if taus is None else taus)})
    if not grid:
        raise UserError("the tau grid is empty; give at least one value, e.g. 0.0 to 2.0")
    if not all(math.isfinite(tau) for tau in grid):
        raise UserError(f"tau values must be finite numbers, got {grid}")
    history = [(tau, float(evaluate(tau))) for tau in grid]
    best_tau, best_score = history[0]
    for tau, value in history[1:]:
        if value > best_score:
            best_tau, best_score = tau, value
    return best_tau, history


def _check_targets(targets: torch.Tensor, num_samples: int, num_classes: int) -> None:
    """(N,) integer targets in [0, C) for N >= 1 validation samples."""
    if tuple(targets.shape) != (num_samples,):
        raise ValueError(f"targets must have shape ({num_samples},), got {tuple(targets.shape)}")
    if num_samples == 0:
        raise UserError("cannot tune tau on an empty validation set; check the validation split")
    if int(targets.min()) < 0 or int(targets.max()) >= num_classes:
        raise ValueError(f"targets must be class indices in [0, {num_classes})")


def confusion_matrix(
    predictions: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> np.ndarray:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    targets = targets.detach().long().to(predictions.device)
    flat = targets * num_classes + predictions.detach().long()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def score_logits(logits: torch.Tensor, targets: torch.Tensor, metric: str) -> float:
    """``metric`` of the arg-max predictions of (N, C) ``logits`` against ``targets``."""
    predictions = logits.argmax(dim=1)
    return metric_fn(metric)(confusion_matrix(predictions, targets, logits.shape[1]))


def metric_fn(name: str) -> MetricFn:
    """The confusion-matrix metric called ``name`` (one of ``METRICS``), or a one-line UserError."""
    functions: dict[str, MetricFn] = {
        "macro_f1": macro_f1,
        "weighted_f1": weighted_f1,
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
    }
    if name not in functions:
        raise UserError(
            f"unknown metric {name!r}{did_you_mean(name, METRICS)}; use one of {', '.join(METRICS)}"
        )
    return functions[name]


def _per_class_f1(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class F1 (0 where 0/0), true counts and predicted counts."""
    matrix = np.asarray(confusion, dtype=np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    denominator = support + predicted  # = 2TP + FP + FN
    f1 = np.divide(
        2.0 * np.diag(matrix), denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    return f1, support, predicted


def macro_f1(confusion: np.ndarray) -> float:
    """Mean F1 over classes in the targets or predictions (sklearn ``average="macro"``)."""
    f1, support, predicted = _per_class_f1(confusion)
    present = (support + predicted) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def weighted_f1(confusion: np.ndarray) -> float:
    """Per-class F1 weighted by true count (sklearn ``average="weighted"``)."""
    f1, support, _ = _per_class_f1(confusion)
    total = support.sum()
    return float((f1 * support).sum() / total) if total > 0 else 0.0


def accuracy(confusion: np.ndarray) -> float:
    """Fraction of samples on the diagonal."""
    matrix = np.asarray(confusion, dtype=np.float64)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total > 0 else 0.0


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over classes present in the targets (sklearn ``balanced_accuracy_score``)."""
    matrix = np.asarray(confusion, dtype=np.float64)
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float((np.diag(matrix)[present] / support[present]).mean())
