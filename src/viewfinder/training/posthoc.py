"""Post-hoc re-balancing of a trained classifier, tuned on validation (``train.posthoc``).

Both methods are edits of the final linear layer, so they are written into ``best.safetensors``
(the unadjusted weights are kept as ``best.raw.safetensors``) and ``evaluate``, ``predict``, TTA
and ensembles use them with no special case:

- ``logit_adjust`` (Menon et al. ICLR 2021): logits - tau * log prior == a bias shift;
- ``tau_norm`` (Kang et al. ICLR 2020): each class weight row divided by its norm ** tau;
- ``class_bias``: logit adjustment, then each class's bias moved on its own by coordinate ascent
  (threshold moving, ``rebalance.tune_class_bias``): F-scores reward a per-class threshold that
  one tau cannot give. Never worse than ``logit_adjust`` on validation; with a handful of
  validation images in a class it can fit their noise, so compare both on held-out data.

tau is chosen on the validation split for the run's monitored metric (macro F1 when the monitor
is not one of accuracy / macro_f1 / weighted_f1 / balanced_accuracy); ties keep the smaller tau.
``posthoc.json``'s ``val_after`` is the tuning's own estimate, from float32 logits of the captured
features; the run summary's metrics come from evaluating the adjusted model itself, whose head may
run in bf16, so near-tied predictions can differ slightly between the two.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from viewfinder.config import RunConfig
from viewfinder.errors import UserError
from viewfinder.models.frozen import frozen_parts
from viewfinder.models.rebalance import (
    METRICS,
    log_prior,
    tau_normalize,
    tune_class_bias,
    tune_tau,
    tune_tau_norm,
)
from viewfinder.training.checkpoint import save_weights
from viewfinder.training.inference import InferenceSession


def final_linear(model: nn.Module) -> nn.Linear:
    """The classifier's last linear layer (the head itself, or the attention head's ``fc``)."""
    _, head = frozen_parts(model)
    linear = head if isinstance(head, nn.Linear) else getattr(head, "fc", None)
    if not isinstance(linear, nn.Linear):
        raise UserError(f"train.posthoc needs a linear classifier; {type(head).__name__} has none")
    return linear


@torch.no_grad()
def _val_inputs(run_dir: Path, cfg: RunConfig) -> tuple[Any, nn.Module, torch.Tensor, torch.Tensor]:
    """(task, model, inputs of the final linear layer, targets) over the validation split."""
    session = InferenceSession(run_dir, cfg, "val", None, "none")
    linear = final_linear(session.model)
    captured: list[torch.Tensor] = []
    hook = linear.register_forward_hook(lambda m, args, out: captured.append(args[0].float()))
    try:
        targets = [batch["target"] for batch, _ in session.batches()]
    finally:
        hook.remove()
    return session.task, session.model, torch.cat(captured).cpu(), torch.cat(targets).cpu()


def _is_adjusted(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return "posthoc" in (handle.metadata() or {})


def apply_posthoc(run_dir: Path, cfg: RunConfig) -> dict[str, Any] | None:
    """Tune on validation, write the adjusted best weights; the summary's ``posthoc``."""
    method = cfg.train.posthoc
    if method == "none":
        return None
    best, raw = run_dir / "best.safetensors", run_dir / "best.raw.safetensors"
    if _is_adjusted(best):  # tuned before (e.g. a resumed run): start from the raw weights
        shutil.copyfile(raw, best)
    else:
        shutil.copyfile(best, raw)
    task, model, features, targets = _val_inputs(run_dir, cfg)
    metric = cfg.train.monitor if cfg.train.monitor in METRICS else "macro_f1"
    result, table = _tune(
        method, final_linear(model), features, targets, task.class_counts(), metric
    )
    save_weights(model.cpu(), best, {"posthoc": {"method": method, "tau": result["tau"]}})
    (run_dir / "posthoc.json").write_text(json.dumps({**result, "table": table}, indent=2))
    return result


@torch.no_grad()
def _tune(
    method: str,
    linear: nn.Linear,
    features: torch.Tensor,
    targets: torch.Tensor,
    counts: Any,
    metric: str,
) -> tuple[dict[str, Any], list]:
    """Tune ``method`` on the validation features and write it into ``linear``."""
    weight = linear.weight.detach().float().cpu()
    bias = None if linear.bias is None else linear.bias.detach().float().cpu()
    if method == "tau_norm":
        tau, table = tune_tau_norm(features, weight, bias, targets, metric=metric)
        linear.weight.copy_(tau_normalize(weight, tau).to(linear.weight.dtype))
        scores = dict(table)
        return _summary(method, metric, tau, scores[0.0], scores[tau]), table
    if bias is None:
        raise UserError(f"train.posthoc={method} needs a classifier with a bias")
    logits = features @ weight.T + bias
    if method == "logit_adjust":
        tau, table = tune_tau(logits, targets, counts, metric=metric)
        linear.bias.copy_((bias - tau * log_prior(counts)).to(linear.bias.dtype))
        scores = dict(table)
        return _summary(method, metric, tau, scores[0.0], scores[tau]), table
    offsets, score, history = tune_class_bias(logits, targets, counts, metric=metric)
    linear.bias.copy_((bias + offsets).to(linear.bias.dtype))
    start = history[0]
    result = _summary(method, metric, start["tau"], start["score_before"], score)
    result.update(val_logit_adjust=start["score"], offsets=[round(float(v), 4) for v in offsets])
    return result, history


def _summary(method: str, metric: str, tau: float, before: float, after: float) -> dict[str, Any]:
    return {
        "method": method,
        "tau": tau,
        "metric": metric,
        "val_before": before,
        "val_after": after,
    }
