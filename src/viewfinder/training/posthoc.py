"""Post-hoc re-balancing of a trained classifier, tuned on validation (``train.posthoc``).

Both methods are edits of the final linear layer, so they are written into ``best.safetensors``
(the unadjusted weights are kept as ``best.raw.safetensors``) and ``evaluate``, ``predict``, TTA
and ensembles use them with no special case:

- ``logit_adjust`` (Menon et al. ICLR 2021): logits - tau * log prior == a bias shift;
- ``tau_norm`` (Kang et al. ICLR 2020): each class weight row divided by its norm ** tau.

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
from viewfinder.models.rebalance import METRICS, log_prior, tau_normalize, tune_tau, tune_tau_norm
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
    """Tune tau on validation, write the adjusted best weights; the summary's ``posthoc``."""
    method = cfg.train.posthoc
    if method == "none":
        return None
    best, raw = run_dir / "best.safetensors", run_dir / "best.raw.safetensors"
    if _is_adjusted(best):  # tuned before (e.g. a resumed run): start from the raw weights
        shutil.copyfile(raw, best)
    else:
        shutil.copyfile(best, raw)
    task, model, features, targets = _val_inputs(run_dir, cfg)
    linear = final_linear(model)
    weight, bias = linear.weight.detach().float().cpu(), linear.bias
    bias = bias.detach().float().cpu() if bias is not None else None
    metric = cfg.train.monitor if cfg.train.monitor in METRICS else "macro_f1"
    counts = task.class_counts()
    if method == "logit_adjust":
        if bias is None:
            raise UserError("train.posthoc=logit_adjust needs a classifier with a bias")
        tau, table = tune_tau(features @ weight.T + bias, targets, counts, metric=metric)
        linear.bias.data.copy_((bias - tau * log_prior(counts)).to(linear.bias.dtype))
    else:
        tau, table = tune_tau_norm(features, weight, bias, targets, metric=metric)
        linear.weight.data.copy_(tau_normalize(weight, tau).to(linear.weight.dtype))
    save_weights(model.cpu(), best, {"posthoc": {"method": method, "tau": tau}})
    scores = dict(table)
    result = {
        "method": method,
        "tau": tau,
        "metric": metric,
        "val_before": scores.get(0.0),
        "val_after": scores[tau],
    }
    (run_dir / "posthoc.json").write_text(json.dumps({**result, "table": table}, indent=2))
    return result
