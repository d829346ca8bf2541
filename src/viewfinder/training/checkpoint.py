"""Checkpoints in safetensors: weights, and the optimizer/scheduler state needed to resume.

``best.safetensors`` and ``last.safetensors`` hold the model weights only (a plain state dict,
loadable by timm or any safetensors reader). ``last.state.safetensors`` holds what ``resume`` needs
beyond the weights: the optimizer's tensors, and as JSON metadata the optimizer's param groups,
the scheduler state and the loop position. Nothing is ever unpickled. Files are written to a
temporary name and renamed, so an interruption during a save never leaves a broken checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from viewfinder.errors import UserError


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(str(tmp))
    os.replace(tmp, path)


def save_weights(model: nn.Module, path: Path, metadata: dict[str, Any] | None = None) -> None:
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    _atomic(path, lambda p: save_model(model, p, metadata=meta))


def load_weights_file(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except RuntimeError as err:  # same names, other shapes: torch raises even with strict=False
        lines = str(err).splitlines()
        raise UserError(f"{path}: does not fit the model ({lines[-1].strip()})") from None
    if missing or unexpected:
        raise UserError(
            f"{path}: does not fit the model ({len(missing)} missing, {len(unexpected)} unexpected"
            f" tensors, e.g. {(list(missing) + list(unexpected))[0]})"
        )


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_train_state(
    path: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: dict[str, Any],
) -> None:
    """Optimizer tensors + JSON metadata (param groups, scheduler, loop position)."""
    tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "optimizer": json.dumps(opt_meta),
        "scheduler": json.dumps(scheduler.state_dict()),
        "progress": json.dumps(progress),
    }
    _atomic(path, lambda p: save_file(tensors, p, metadata=metadata))


def _match_param_strides(optimizer: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor its parameter's memory layout again.

    Saving makes them contiguous; fused optimizer kernels walk a parameter and its moments as
    raw memory, so a channels_last weight with a contiguous ``exp_avg`` would be updated with
    the wrong elements after a resume.
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.ndim > 1:
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def load_train_state(
    path: Path, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore optimizer and scheduler from ``path``; return the saved loop position."""
    if not path.is_file():
        raise UserError(f"no resumable checkpoint in {path.parent} ({path.name} missing)")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    torch.set_rng_state(tensors.pop("rng.torch"))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, json.loads(metadata["optimizer"])))
    _match_param_strides(optimizer)
    scheduler.load_state_dict(json.loads(metadata["scheduler"]))
    return json.loads(metadata["progress"])
