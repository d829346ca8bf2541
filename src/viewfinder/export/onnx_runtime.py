"""The onnxruntime side of an exported run: a latency-tuned CPU session, ``OnnxModule`` (the
session standing in for the PyTorch model in ``task.step``, for ``serve --runtime onnx``),
``load_onnx_run`` and ``preprocess_image`` (the metadata's preprocessing, executable)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from viewfinder.errors import UserError


def first_line(err: BaseException) -> str:
    """An exception as one short line (onnxruntime and the exporters write pages)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def cpu_cores() -> int:
    """Cores this process may use (its affinity mask: containers and taskset see fewer)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def make_session(path: str | Path, *, threads: int | None = None, spinning: bool = True) -> Any:
    """An onnxruntime CPU session tuned for single-image latency: one operator at a time
    (sequential execution, one inter-op thread) spread over every usable core (intra-op threads =
    cores): parallel branches are rare in these models, and on 2 cores inter-op threads would only
    compete with intra-op ones. All graph optimisations (conv+BN+ReLU fusion etc.). Worker threads
    spin between operators (onnxruntime's default): on the demo cnn, 2 cores, batch 1, 1.1 ms
    against 1.3 ms when they sleep, 1.2 against 2.2 ms beside PyTorch in one process; but 4x
    slower when another process keeps the cores busy: ``spinning=False`` for a shared machine
    (benchmarks/export_latency.py times both)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no per-session warnings in the CLI
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise UserError(f"{path}: onnxruntime cannot load it ({first_line(err)})") from None


class OnnxModule(nn.Module):
    """An onnxruntime session that stands in for a run's PyTorch model in ``task.step``:
    ``forward(image)`` returns what the PyTorch model's forward returns (classify: logits
    (B, C); iqa: the standardised score (B, 1); an image encoder: its features) as a float32
    CPU tensor. The zero-size parameter makes ``next(model.parameters()).device`` the CPU, as
    the serving and inference code ask it."""

    def __init__(self, session: Any, metadata: dict[str, Any]) -> None:
        super().__init__()
        self.session, self.metadata = session, metadata
        self.output = metadata.get("module_output", session.get_outputs()[0].name)
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        array = image.detach().to("cpu", torch.float32).contiguous().numpy()
        (out,) = self.session.run([self.output], {"image": array})
        return torch.from_numpy(out)

    def train(self, mode: bool = True) -> OnnxModule:
        if mode:
            raise UserError("an ONNX model is for inference only: it cannot be trained")
        return super().train(False)


def load_onnx_run(path: str | Path, *, spinning: bool = True) -> tuple[OnnxModule, dict[str, Any]]:
    """(OnnxModule, metadata) of a file ``viewfinder export`` wrote (or a run folder holding
    ``model.onnx``); ``spinning``: see ``make_session``."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.onnx"
    if not path.is_file():
        raise UserError(f"{path}: not found; export the run first (viewfinder export RUN)")
    session = make_session(path, spinning=spinning)
    raw = session.get_modelmeta().custom_metadata_map
    if "viewfinder_version" not in raw:
        raise UserError(f"{path}: not written by `viewfinder export` (no viewfinder metadata)")
    metadata = {key: json.loads(value) for key, value in raw.items()}
    return OnnxModule(session, metadata).eval(), metadata


def preprocess_image(path: str | Path, metadata: dict[str, Any]) -> np.ndarray:
    """One image file as the exported model's input (1, 3, S, S), following the metadata with
    viewfinder's own decode and resize: the documented recipe, executable."""
    from viewfinder.data.images import decode_resized, resize_array

    size = metadata["image_size"]
    array = resize_array(decode_resized(path, metadata["stored_size"]), size, size)
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float()
    if metadata["grayscale"]:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = x.mul(weights).sum(dim=1, keepdim=True).expand(1, 3, size, size).contiguous()
    mean = torch.tensor(metadata["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(metadata["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return x.mul_(1.0 / (255.0 * std)).sub_(mean / std).numpy()
