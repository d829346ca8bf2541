"""Classification losses, including the ones made for long-tailed (imbalanced) data.

Which to use (``build_loss`` names):

- ``ce``: cross-entropy, optionally class-weighted. The default, and right for balanced data.
- ``focal``: Lin et al., "Focal Loss for Dense Object Detection" (ICCV 2017). Scales each term by
  (1 - p)^gamma so the many easy (mostly head-class) examples stop dominating the gradient; try it
  when the model is confidently right on common classes and weak on hard or rare ones.
- ``balanced_softmax``: Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition"
  (NeurIPS 2020). Cross-entropy on ``logits + log(prior)``: training absorbs the label prior, so
  the raw logits (what predict and serve use) estimate a class-balanced posterior. The first
  thing to try on a long tail when the test set, or the metric (macro-F1, balanced accuracy),
  treats classes equally.
- ``logit_adjusted``: Menon et al., "Long-tail Learning via Logit Adjustment" (ICLR 2021).
  Cross-entropy on ``logits + tau * log(prior)``; tau = 1 equals ``balanced_softmax``, larger tau
  favours the tail more.
- Class weights for ``ce`` / ``focal`` (``class_weights``): inverse frequency, its square root, or
  the "effective number of samples" of Cui et al., "Class-Balanced Loss Based on Effective Number
  of Samples" (CVPR 2019), a softer inverse frequency that accounts for near-duplicate samples.

Conventions shared by every loss: logits are (B, C) and are computed on in float32 (mixed
precision logits are cast); ``target`` is either int class indices (B,) or a float distribution
(B, C) as mixup/cutmix produce; the result is one scalar. Label smoothing mixes the target with
the uniform distribution: (1 - eps) * t + eps / C. Only the training loss is adjusted: the
model's outputs are never changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from viewfinder.data.sampling import balanced_class_weights
from viewfinder.errors import UserError
from viewfinder.registry import Registry

Counts = Sequence[float] | np.ndarray | torch.Tensor

# (1 - p) is floored here in the focal term: at p == 1 the gradient of (1 - p)^gamma for
# gamma < 1 is infinite and 0 * inf is NaN; below the floor the term is 0 anyway.
_FOCAL_FLOOR = 1e-12


def class_weights(counts: Counts, scheme: str, beta: float = 0.999) -> torch.Tensor:
    """Per-class loss weights (float32) for "none", "inverse", "sqrt" or "effective".

    Scaled so sum_c w_c n_c == sum_c n_c (average weight per training sample is 1, so the loss
    keeps its scale); classes with count 0 get weight 0. See ``balanced_class_weights``.
    """
    return torch.from_numpy(balanced_class_weights(counts, scheme, beta)).float()


def log_prior(counts: Counts) -> torch.Tensor:
    """log(n_c / sum n), float32, with zero counts raised to 1 first.

    Why clamp: a class with no training images would get log 0 = -inf, and -inf in the logits
    gives NaN losses as soon as label smoothing or a soft target puts mass on that class. Counting
    it as one image treats it as rare as the rarest possible class, which is what it is.
    """
    array = np.asarray(
        counts.detach().cpu().numpy() if isinstance(counts, torch.Tensor) else counts,
        dtype=np.float64,
    )
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)) or np.any(array < 0):
        raise UserError("class counts must be a non-empty list of finite numbers >= 0")
    clamped = np.maximum(array, 1.0)
    return torch.from_numpy(np.log(clamped / clamped.sum())).float()


def _check_label_smoothing(label_smoothing: float) -> float:
    if not (isinstance(label_smoothing, (int, float)) and 0.0 <= label_smoothing < 1.0):
        raise UserError(f"label_smoothing={label_smoothing!r} must be in [0, 1), e.g. 0.1")
    return float(label_smoothing)


def _check_inputs(logits: torch.Tensor, target: torch.Tensor, num_classes: int | None) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be (batch, classes), got shape {tuple(logits.shape)}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"logits have {logits.shape[1]} classes but the loss was built for {num_classes}"
        )
    expected = logits.shape if target.is_floating_point() else logits.shape[:1]
    if target.shape != expected:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not fit logits {tuple(logits.shape)}: "
            "use class indices (B,) or a distribution (B, C)"
        )


def _target_distribution(target: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """Hard or soft targets as a smoothed (B, C) float32 distribution."""
    if target.is_floating_point():
        dist = target.float()
    else:
        dist = nn.functional.one_hot(target.long(), num_classes).float()
    return dist * (1.0 - eps) + eps / num_classes if eps else dist


def _cross_entropy(
    log_probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """Weighted, smoothed cross-entropy on log-probabilities (B, C).

    Hard targets follow ``F.cross_entropy`` exactly: per sample (1 - eps) w_y (-log p_y) +
    eps / C * sum_c w_c (-log p_c), summed and divided by sum_i w_{y_i} (the plain mean when
    unweighted). One difference: if every target in the batch has weight 0 the divisor falls back
    to the batch size instead of giving 0 / 0 = NaN. Soft targets have no single class per sample
    to normalise by, so they use sum_c w_c t_c (-log p_c) averaged over the batch, which is what
    ``F.cross_entropy`` does with probability targets; since the weights average 1 per sample the
    two agree in expectation.
    """
    num_classes = log_probs.shape[1]
    w = log_probs.new_ones(num_classes) if weight is None else weight
    if target.is_floating_point():
        dist = _target_distribution(target, num_classes, eps)
        return -(dist * w * log_probs).sum(dim=1).mean()
    target = target.long()
    target_weight = w[target]
    nll = -log_probs.gather(1, target[:, None]).squeeze(1)
    per_sample = (1.0 - eps) * target_weight * nll
    if eps:
        per_sample = per_sample - eps / num_classes * (log_probs * w).sum(dim=1)
    total = target_weight.sum()
    divisor = torch.where(total > 0, total, torch.full_like(total, float(len(target))))
    return per_sample.sum() / divisor


class CrossEntropy(nn.Module):
    """Cross-entropy with optional per-class weights and label smoothing (see ``_cross_entropy``
    for how weighted batches are normalised)."""

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = _check_label_smoothing(label_smoothing)
        weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        # Not persistent: the loss is rebuilt from the data, never loaded from a checkpoint.
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = None if self.weight is None else len(self.weight)
        _check_inputs(logits, target, num_classes)
        log_probs = logits.float().log_softmax(dim=1)
        return _cross_entropy(log_probs, target, self.weight, self.label_smoothing)


class FocalLoss(nn.Module):
    """Multi-class focal loss: mean over the batch of sum_c w_c t_c (1 - p_c)^gamma (-log p_c).

    With a hard target and no smoothing that is w_y (1 - p_y)^gamma (-log p_y), Lin et al.'s
    alpha-weighted form with alpha = the class weight. Unlike ``CrossEntropy`` a weighted batch is
    averaged over samples, not divided by the sum of weights (as in the paper, and so hard
    targets and their one-hot soft versions give the same value). gamma = 0 is cross-entropy.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not (isinstance(gamma, (int, float)) and 0.0 <= gamma < math.inf):
            raise UserError(f"focal_gamma={gamma!r} must be a number >= 0, e.g. 2.0")
        self.gamma = float(gamma)
        self.label_smoothing = _check_label_smoothing(label_smoothing)
        weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = None if self.weight is None else len(self.weight)
        _check_inputs(logits, target, num_classes)
        log_probs = logits.float().log_softmax(dim=1)
        dist = _target_distribution(target, logits.shape[1], self.label_smoothing)
        one_minus_p = (-torch.expm1(log_probs)).clamp_min(_FOCAL_FLOOR)  # 1 - p, accurately
        per_class = dist * one_minus_p.pow(self.gamma) * -log_probs
        if self.weight is not None:
            per_class = per_class * self.weight
        return per_class.sum(dim=1).mean()


class LogitAdjustedLoss(nn.Module):
    """Cross-entropy on ``logits + tau * log(prior)`` (Menon et al., ICLR 2021).

    Adding the log prior during training only means the model no longer needs to encode class
    frequency in its logits, so at test time (no adjustment) rare classes are not drowned out.
    Priors come from ``log_prior`` (zero counts treated as 1).
    """

    def __init__(self, counts: Counts, tau: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not (isinstance(tau, (int, float)) and 0.0 <= tau < math.inf):
            raise UserError(f"tau={tau!r} must be a number >= 0, e.g. 1.0")
        self.tau = float(tau)
        self.label_smoothing = _check_label_smoothing(label_smoothing)
        self.register_buffer("log_prior", log_prior(counts), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_inputs(logits, target, len(self.log_prior))
        adjusted = logits.float() + self.tau * self.log_prior
        return _cross_entropy(adjusted.log_softmax(dim=1), target, None, self.label_smoothing)


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax (Ren et al., NeurIPS 2020): cross-entropy on ``logits + log(prior)``.

    The same as ``LogitAdjustedLoss`` with tau = 1; kept as its own name because that is how the
    method is known.
    """

    def __init__(self, counts: Counts, label_smoothing: float = 0.0) -> None:
        super().__init__(counts, tau=1.0, label_smoothing=label_smoothing)


@dataclass(frozen=True)
class _LossOptions:
    weight: torch.Tensor | None
    focal_gamma: float
    tau: float
    label_smoothing: float


LossFactory = Callable[[Counts, _LossOptions], nn.Module]
LOSSES: Registry[LossFactory] = Registry("loss")
# These fold the class prior into the logits; class weights on top would re-balance twice.
_PRIOR_ADJUSTED = ("balanced_softmax", "logit_adjusted")


@LOSSES.register("ce")
def _build_ce(counts: Counts, options: _LossOptions) -> nn.Module:
    return CrossEntropy(weight=options.weight, label_smoothing=options.label_smoothing)


@LOSSES.register("focal")
def _build_focal(counts: Counts, options: _LossOptions) -> nn.Module:
    return FocalLoss(
        gamma=options.focal_gamma, weight=options.weight, label_smoothing=options.label_smoothing
    )


@LOSSES.register("balanced_softmax")
def _build_balanced_softmax(counts: Counts, options: _LossOptions) -> nn.Module:
    return BalancedSoftmaxLoss(counts, label_smoothing=options.label_smoothing)


@LOSSES.register("logit_adjusted")
def _build_logit_adjusted(counts: Counts, options: _LossOptions) -> nn.Module:
    return LogitAdjustedLoss(counts, tau=options.tau, label_smoothing=options.label_smoothing)


def build_loss(
    name: str,
    counts: Counts,
    *,
    weights: str = "none",
    beta: float = 0.999,
    focal_gamma: float = 2.0,
    tau: float = 1.0,
    label_smoothing: float = 0.0,
) -> nn.Module:
    """The loss called ``name`` for classes with training counts ``counts``.

    ``weights`` is a ``class_weights`` scheme for "ce" and "focal" ("none" passes no weight at
    all); "balanced_softmax" and "logit_adjusted" already re-balance, so they refuse weights.
    """
    factory = LOSSES.get(name)
    if name in _PRIOR_ADJUSTED and weights != "none":
        raise UserError(
            f"loss {name!r} already re-balances classes through the label prior; "
            f"set weights=none, or use loss ce or focal with weights={weights}"
        )
    weight = None if weights == "none" else class_weights(counts, weights, beta)
    options = _LossOptions(
        weight=weight, focal_gamma=focal_gamma, tau=tau, label_smoothing=label_smoothing
    )
    return factory(counts, options)
