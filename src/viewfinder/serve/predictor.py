"""A served run: its model loaded once, fed decoded uploads, answering with predict's own rows.

One code path with ``viewfinder predict``: uploads are decoded and resized exactly as the image
cache stores files (``decode_resized``), the task turns them into the items its ``dataset`` yields
(``Task.request_dataset``), and ``collate`` -> ``forward_views`` (the run's TTA views) ->
``postprocess`` are the very functions ``predict`` calls. So a served answer equals the
submission row ``predict`` writes for the same file (tested).

A fold set, or several classification runs under one name (``serve ens=RUN_A,RUN_B``), is served
as the ensemble ``predict`` makes of them (mean class probabilities); other tasks' fold sets, and
runs of several tasks under one name, are refused in one line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viewfinder.errors import UserError

PROB_PREFIX = "prob_"  # postprocess(probabilities=True) names class probability columns so


@dataclass
class Member:
    """One model of a served run (a fold set has several)."""

    path: Path
    task: Any
    model: torch.nn.Module
    numerics: Any
    views: list[str]


@dataclass
class ServedRun:
    """A run folder (or fold set) ready to answer requests; see the module doc."""

    name: str
    path: Path
    members: list[Member]
    runtime: str = "torch"
    info: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def task(self) -> Any:
        return self.members[0].task

    @property
    def fields(self) -> tuple[str, ...]:
        """The text fields a request must send beside its image (``question`` for VQA)."""
        return tuple(self.task.request_fields)

    def decode(self, data: bytes, *, max_pixels: int) -> np.ndarray:
        """An upload as the (S, S, 3) uint8 array the image cache would hold for that file."""
        from viewfinder.data.images import load_image_bytes, resize_array

        size = self.task.stored_size()
        image = load_image_bytes(data, draft=size, max_pixels=max_pixels)
        return resize_array(np.asarray(image), size, size)

    @torch.no_grad()
    def predict(self, images: list[np.ndarray], fields: list[dict[str, str]]) -> list[dict]:
        """Rows of ``postprocess(probabilities=True)`` for a batch of decoded uploads."""
        with self._lock:  # one batch at a time per model (the batcher already serialises)
            outputs, batch = None, None
            for member in self.members:
                out, batch = _forward(member, images, fields)
                if len(self.members) > 1:
                    out = out.float().softmax(dim=1)
                outputs = out if outputs is None else outputs + out
            if len(self.members) > 1:  # mean probabilities, as log (postprocess softmaxes)
                outputs = (outputs / len(self.members)).clamp_min(1e-38).log()
            return self.task.postprocess(outputs, batch, probabilities=True)


def _forward(member: Member, images: list[np.ndarray], fields: list[dict[str, str]]) -> tuple:
    """One member's outputs over the batch, and the batch (``predict``'s own ``forward_batch``)."""
    from viewfinder.training.inference import forward_batch

    task = member.task
    dataset = task.request_dataset(images, fields)
    indices = list(range(len(dataset)))
    getitems = getattr(dataset, "__getitems__", None)
    batch = task.collate(getitems(indices) if getitems else [dataset[i] for i in indices])
    batch, out = forward_batch(task, member.model, batch, member.views, member.numerics,
                               dataset.records)  # fmt: skip
    return out["outputs"], batch


def load_served(
    paths: str | Path | Sequence[str | Path], *, name: str | None = None, runtime: str = "torch"
) -> ServedRun:
    """Load a run folder, a fold set, or several classification runs as one ensemble (mean
    class probabilities, as ``predict RUN RUN...``); one-line errors for anything else."""
    from viewfinder.experiments.ensemble import expand_members

    given = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
    for path in given:
        if not path.exists():
            raise UserError(f"{path}: run folder not found")
    members = [_load_member(p, runtime) for p, _ in expand_members(given)]
    if len(members) > 1:
        _check_ensemble(given, members)
    first = given[0]
    served = ServedRun(name or _default_name(first), first, members, runtime)
    served.info = run_info(served)
    return served


def _check_ensemble(given: list[Path], members: list[Member]) -> None:
    where = ", ".join(map(str, given))
    if {m.task.name for m in members} != {"classify"}:
        raise UserError(f"{where}: only classification runs are served as one ensemble; "
                        "serve each run under its own name")  # fmt: skip
    classes = members[0].task.classes
    for member in members[1:]:
        if member.task.classes != classes:
            raise UserError(f"{member.path}: its classes differ from {members[0].path}'s; "
                            "ensemble members must share the class list")  # fmt: skip


def _load_member(path: Path, runtime: str) -> Member:
    from viewfinder.api import Run
    from viewfinder.training.inference import load_trained, resolve_tta

    cfg = Run(path).config
    task, model, numerics, _ = load_trained(path, cfg)  # one line when it has no weights
    if runtime == "onnx":
        model = _onnx_model(path, task)
    elif runtime != "torch":
        raise UserError(f"--runtime {runtime!r}: choose torch or onnx")
    return Member(path, task, model, numerics, resolve_tta(cfg, None))


def _onnx_model(path: Path, task: Any) -> torch.nn.Module:
    """The run's exported ``model.onnx`` (``viewfinder export``) standing in for the model."""
    from viewfinder.export import load_onnx_run

    if task.name not in ("classify", "iqa"):
        raise UserError(f"{path}: --runtime onnx serves classify and iqa runs (this is "
                        f"{task.name}; its ONNX file is the image encoder only)")  # fmt: skip
    onnx_path = path / "model.onnx"
    if not onnx_path.is_file():
        raise UserError(f"{onnx_path}: not found; run `viewfinder export {path}` first")
    # no spinning: between batches the server's own threads (HTTP, decoding) need the cores
    # that onnxruntime's idle workers would keep busy (benchmarks/serve_load.py)
    module, _ = load_onnx_run(onnx_path, spinning=False)
    return module


def _default_name(path: Path) -> str:
    return path.resolve().name


def run_info(served: ServedRun) -> dict[str, Any]:
    """What ``GET /v1/runs`` says of a run: task, model, classes, input size, metrics."""
    from viewfinder.api import Run

    first = served.members[0]
    cfg = Run(first.path).config
    info: dict[str, Any] = {
        "name": served.name,
        "path": str(served.path),
        "task": served.task.name,
        "model": cfg.model.name,
        "image_size": cfg.image_size,
        "inputs": ["image", *served.fields],
        "members": len(served.members),
        "runtime": served.runtime,
        "precision": first.numerics.precision,
        "tta": first.views,
    }
    classes = getattr(served.task, "classes", None)
    if classes:
        info["classes"] = list(classes)
    info["metrics"] = _metrics(served.path if len(served.members) > 1 else first.path)
    return info


def _metrics(path: Path) -> dict[str, Any]:
    """The monitored metric of training and, when evaluated, the test (else val) scores."""
    out: dict[str, Any] = {}
    summary = path / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        if s.get("monitor") and isinstance(s.get("best_value"), int | float):
            out[f"best_{s['monitor']}"] = s["best_value"]
    for split in ("test", "val"):
        scores = path / "eval" / split / "metrics.json"
        if scores.is_file():
            values = json.loads(scores.read_text())
            out[split] = {k: v for k, v in values.items() if isinstance(v, int | float)}
            break
    return out


def shape_result(served: ServedRun, row: dict[str, Any], top_k: int) -> dict[str, Any]:
    """A postprocess row as the API's JSON: the prediction (the submission row less its id) and,
    for class probabilities, the top-k classes."""
    columns = served.task.submission_columns()
    prediction = {k: v for k, v in row.items() if k != columns[0] and not k.startswith(PROB_PREFIX)}
    result: dict[str, Any] = {"prediction": prediction}
    probs = [(k[len(PROB_PREFIX) :], float(v)) for k, v in row.items() if k.startswith(PROB_PREFIX)]
    if probs:
        probs.sort(key=lambda kv: -kv[1])
        result["top_k"] = [{"label": c, "probability": round(p, 6)} for c, p in probs[:top_k]]
    return result
