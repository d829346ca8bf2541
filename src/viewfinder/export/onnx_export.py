"""ONNX export of a finished run, checked against PyTorch (``onnx_runtime.py`` runs the file).

``viewfinder export RUN --format onnx [-o model.onnx]`` writes one self-contained ``.onnx`` file:

- ``classify`` and ``iqa`` runs: the whole model. Input ``image``: float32 (batch, 3, S, S), NCHW
  RGB, already normalised exactly as evaluation normalises it (the metadata says how). Outputs:
  ``logits`` (batch, classes) for ``classify``; for ``iqa`` ``mos`` (batch,), the score
  ``predict`` writes (mapped back from the standardised scale and clamped to the MOS range), and
  ``standardised_mos`` (batch, 1), the head's own output, which is what ``OnnxModule`` hands to
  ``task.step`` so that ``step`` and ``postprocess`` stay the task's own.
- ``caption``, ``iqa+caption`` and ``vqa`` runs: the image encoder only (output ``features``: what
  the heads read, the grid frozen mode caches); text decoding stays in PyTorch. The metadata says
  ``exported: "image encoder"``.

The batch axis is dynamic. The metadata (``metadata_props``, each value JSON) holds everything a
user needs to feed the file: sizes, the resize rule, mean/std on the 0-1 scale, class names or MOS
range, the viewfinder version and the parity figures. Right after exporting, onnxruntime and the
PyTorch fp32 model are run on up to ``check_images`` of the run's own validation (else test)
images, at batch 1 and at a larger batch; the file is deleted and a one-line ``UserError`` raised
when they differ by more than ``PARITY_TOLERANCE`` of the output scale.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from viewfinder.errors import UserError
from viewfinder.export.onnx_runtime import first_line, make_session
from viewfinder.training.inference import inference_config, load_trained, weights_path

FORMATS = ("onnx",)
WHOLE_MODEL, IMAGE_ENCODER = "whole model", "image encoder"
EXPORTED = {"classify": WHOLE_MODEL, "iqa": WHOLE_MODEL, "caption": IMAGE_ENCODER,
            "iqa+caption": IMAGE_ENCODER, "vqa": IMAGE_ENCODER}  # fmt: skip
# ONNX output names, and the one equal to the PyTorch model's own forward (OnnxModule returns it)
OUTPUTS = {
    "classify": ("logits",),
    "iqa": ("mos", "standardised_mos"),
    IMAGE_ENCODER: ("features",),
}
MODULE_OUTPUT = {"classify": "logits", "iqa": "standardised_mos", IMAGE_ENCODER: "features"}
# fp32 ONNX vs fp32 PyTorch differ only by operation order (another conv algorithm, fused
# BatchNorm): ~1e-6 of the output scale, measured 1e-7..3e-6 on the demo's cnn, resnet18 and
# resnet18+attn. A real mismatch (a dropped op, BatchNorm in training mode, a wrong constant)
# moves outputs by a sizeable fraction of their scale. 1e-3 of the scale (max |output|, at least 1)
# sits far from both, and keeps the argmax and a MOS rounded to 3 digits unchanged.
PARITY_TOLERANCE = 1e-3


@dataclass
class ExportResult:
    """What ``export_onnx`` wrote and how closely it matches PyTorch."""

    path: Path
    size_bytes: int
    metadata: dict[str, Any]
    max_abs_diff: float  # over every output, batch size and checked image
    bound: float  # the largest allowed difference (PARITY_TOLERANCE x the output scale)
    checked_on: str  # "8 val images", or "random input (...)" when the run's images are gone
    batch_sizes: tuple[int, ...] = field(default_factory=tuple)

    def summary_lines(self) -> list[str]:
        """The CLI's report: file and size, parity, and the preprocessing to feed it."""
        m = self.metadata
        sizes = " and ".join(str(b) for b in self.batch_sizes)
        return [
            f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MB): {m['task']} {m['model']}, "
            f"{m['exported']}, {m['exporter']} exporter, opset {m['opset']}",
            f"parity: max |onnxruntime - PyTorch fp32| = {self.max_abs_diff:.2e} (bound "
            f"{self.bound:.1e}) on {self.checked_on}, batch {sizes}",
            f"input {m['input']['name']}: {m['preprocess']}; outputs: "
            + ", ".join(f"{k} {v}" for k, v in m["outputs"].items()),
        ]


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: viewfinder exports {', '.join(FORMATS)} only")


def export_onnx(
    run_dir: str | Path, out: str | Path | None = None, *, opset: int | None = None,
    check_images: int = 8,
) -> ExportResult:  # fmt: skip
    """Export a run's model (or image encoder) to ONNX and check it against PyTorch; see the
    module doc. ``out`` defaults to ``RUN/model.onnx``."""
    from viewfinder.api import Run

    run_dir = _check_run(Path(run_dir))
    cfg = inference_config(Run(run_dir).config)
    if cfg.task not in EXPORTED:
        raise UserError(f"{run_dir}: task {cfg.task} cannot be exported; "
                        f"export runs of {', '.join(EXPORTED)}")  # fmt: skip
    path = _output_path(run_dir, out)
    task, model, _, _ = load_trained(run_dir, cfg)  # the numerics are PyTorch's, not the file's
    model = model.float().to("cpu", memory_format=torch.contiguous_format).eval()
    module, names = exportable(task, model)
    images, checked_on = check_inputs(task, check_images)
    proto, exporter = _export(module, images, names, opset)
    metadata = export_metadata(task, model, names, exporter, proto)
    metadata["weights"] = weights_path(run_dir).name
    partial = path.with_name(f".{path.stem}.partial.onnx")  # an earlier good file stays until
    _save(proto, metadata, partial, data_name=path.name + ".data")  # this one passes
    try:
        diff, bound, sizes = check_parity(partial, module, images, names)
    except UserError as err:
        _remove(partial)
        raise UserError(f"{path}: {err}") from None
    metadata["parity"] = {"max_abs_diff": diff, "bound": bound, "checked_on": checked_on,
                          "batch_sizes": list(sizes)}  # fmt: skip
    _save_metadata(partial, metadata)
    os.replace(partial, path)
    return ExportResult(path, _size(path), metadata, diff, bound, checked_on, sizes)


# --- the run and the module -----------------------------------------------------------------------


def _check_run(path: Path) -> Path:
    """One-line errors for anything but a trained run folder."""
    from viewfinder.experiments.ensemble import is_fold_set

    if not path.is_dir():
        raise UserError(f"{path}: no such run folder")
    if is_fold_set(path):
        folds = sorted(p.name for p in path.glob("fold*") if p.is_dir())
        example = path / (folds[0] if folds else "fold0")
        raise UserError(f"{path} is a fold set ({len(folds)} folds): export each fold run "
                        f"(e.g. viewfinder export {example})")  # fmt: skip
    if not (path / "config.yaml").is_file():
        raise UserError(f"{path}: not a run folder (config.yaml missing)")
    weights_path(path)  # one line when the run has no weights yet
    return path


class _QualityOutputs(nn.Module):
    """An ``iqa`` model with the task's own mapping to MOS (``QualityTask.mos_loss``) appended."""

    def __init__(self, model: nn.Module, mean: float, std: float, mos_range: tuple) -> None:
        super().__init__()
        self.model, self.mean, self.std = model, float(mean), float(std)
        self.low, self.high = float(mos_range[0]), float(mos_range[1])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.model(image)
        mos = raw.float().reshape(raw.shape[0], -1).mean(dim=1) * self.std + self.mean
        return mos.clamp(self.low, self.high), raw


class ImageEncoder(nn.Module):
    """The part of a caption or VQA model that reads pixels: exactly what its heads read (and
    frozen mode caches): ``models/frozen.py``'s ``frozen_parts``."""

    def __init__(self, model: nn.Module) -> None:
        from viewfinder.models.frozen import frozen_parts

        super().__init__()
        self.model = model
        self.features = frozen_parts(model)[0]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.features(image)


def exportable(task: Any, model: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    """The module to export for the run's task, and its ONNX output names."""
    if EXPORTED[task.name] == IMAGE_ENCODER:
        return ImageEncoder(model).eval(), OUTPUTS[IMAGE_ENCODER]
    if task.name == "iqa":
        return _QualityOutputs(model, task.mean, task.std, task.mos_range).eval(), OUTPUTS["iqa"]
    return model, OUTPUTS["classify"]


def check_inputs(task: Any, count: int) -> tuple[torch.Tensor, str]:
    """Up to ``count`` of the run's own val (else test) images, as evaluation feeds them
    (``dataset`` -> ``collate`` -> ``transform_batch``), at least two (the batch axis is checked);
    normal noise, said so, when the run's images are gone."""
    if count < 1:
        return _noise(task, 2), "random input (--check-images 0)"
    reason = ""
    for split in ("val", "test"):
        try:
            images = _split_images(task, split, count)
        except UserError as err:  # no such split, or its files are gone: try the next source
            reason = reason or str(err)
            continue
        if images is not None:
            n = len(images)
            images = images if n > 1 else images.repeat(2, 1, 1, 1)
            return images, f"{n} {split} image{'s' * (n != 1)}"
    return _noise(task, max(2, min(count, 8))), f"random input (run's images not found: {reason})"


def _split_images(task: Any, split: str, count: int) -> torch.Tensor | None:
    """The first ``count`` records of a split through the task's own eval pipeline. The task is
    this export's own copy, so trimming its split never decodes a whole split into the cache."""
    from torch.utils.data import DataLoader

    records = task.split_records(split)
    task.splits = {**task.splits, split: records[:count]}
    dataset = task.dataset(split, train=False)
    loader = DataLoader(dataset, batch_size=max(1, len(dataset)), collate_fn=task.collate)
    batch = next(iter(loader), None)
    if batch is None or "image" not in batch:
        return None
    image = task.transform_batch(batch, train=False)["image"]
    return image[:count].float().contiguous()


def _noise(task: Any, count: int) -> torch.Tensor:
    size = task.cfg.image_size
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(0))


def _output_path(run_dir: Path, out: str | Path | None) -> Path:
    path = run_dir / "model.onnx" if out is None else Path(out)
    if path.is_dir():
        path = path / "model.onnx"
    if path.suffix != ".onnx":
        raise UserError(f"-o {path}: give an .onnx file name (e.g. {path.with_suffix('.onnx')})")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# --- exporting ------------------------------------------------------------------------------------


def _export(
    module: nn.Module, images: torch.Tensor, names: tuple[str, ...], opset: int | None
) -> tuple[Any, str]:
    """(ModelProto, exporter name). torch 2.14's ``torch.export``-based exporter (dynamo=True)
    first: the maintained path, and it exported every model tried (cnn, resnet18(+attn/+mlp),
    efficientnet_b0, mobilenetv3, convnext_atto, vit_tiny, caption/VQA encoders). The deprecated
    TorchScript exporter is the fallback for a model ``torch.export`` cannot trace (data-dependent
    control flow in third-party code); the metadata says which one wrote the file and why."""
    example = images[:2]
    with torch.no_grad():
        try:
            return _dynamo_export(module, example, names, opset), "dynamo"
        except Exception as err:  # torch.export and onnxscript raise many types; reported below
            reason = first_line(err)
        try:
            return _torchscript_export(module, example, names, opset), (
                f"torchscript (the dynamo exporter failed: {reason})"
            )
        except Exception as err:  # both failed: one line naming both causes
            raise UserError(
                f"could not export {type(module).__name__} to ONNX: dynamo exporter: {reason}; "
                f"TorchScript exporter: {first_line(err)}"
            ) from None


def _dynamo_export(module: nn.Module, example: torch.Tensor, names: tuple, opset: int | None):
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        module, (example,), None, dynamo=True, input_names=["image"], output_names=list(names),
        dynamic_shapes=({0: batch},), opset_version=opset, verbose=False,
    )  # fmt: skip
    return program.model_proto


def _torchscript_export(module: nn.Module, example: torch.Tensor, names: tuple, opset: int | None):
    import io

    import onnx

    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in ("image", *names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # we know: it is the fallback
        torch.onnx.export(
            module, (example,), buffer, dynamo=False, input_names=["image"],
            output_names=list(names), dynamic_axes=axes, opset_version=opset,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


# --- metadata -------------------------------------------------------------------------------------


def export_metadata(
    task: Any, model: nn.Module, names: tuple[str, ...], exporter: str, proto: Any
) -> dict[str, Any]:
    """What a user needs to feed the file (sizes, resize, mean/std) and read its outputs."""
    import viewfinder
    from viewfinder.models.backbones import data_config
    from viewfinder.models.classifier import backbone_of

    cfg = task.cfg
    size, stored = cfg.image_size, int(task.stored_size())
    mean, std = data_config(backbone_of(model))  # as ImageTask.prepare_image_model fixes them
    meta: dict[str, Any] = {
        "viewfinder_version": viewfinder.__version__, "task": cfg.task, "model": cfg.model.name,
        "run": task.run_dir.name, "exported": EXPORTED[cfg.task], "exporter": exporter,
        "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
        "input": {"name": "image", "dtype": "float32", "layout": "NCHW", "channels": "RGB",
                  "shape": ["batch", 3, size, size]},
        "image_size": size, "stored_size": stored, "mean": list(mean), "std": list(std),
        "pixel_scale": "0-1: x = (pixel / 255 - mean) / std",
        "grayscale": bool(cfg.data.grayscale),
        "resize": _resize_rule(size, stored),
        "module_output": MODULE_OUTPUT[cfg.task if cfg.task in MODULE_OUTPUT else IMAGE_ENCODER],
    }  # fmt: skip
    meta["preprocess"] = _preprocess_text(meta)
    meta["outputs"] = _outputs_text(task, names, proto)
    if cfg.task == "classify":
        meta["class_names"] = list(task.classes)
    if cfg.task == "iqa":
        meta.update(mos_range=list(task.mos_range), mos_mean=task.mean, mos_std=task.std)
    return meta


def _resize_rule(size: int, stored: int) -> str:
    """How evaluation resizes (``images.decode_resized``, then ``BatchTransform`` on a CPU)."""
    rule = (f"resize the whole image (no crop, aspect ratio not kept) to {stored}x{stored}: "
            "while it is at least twice that size, OpenCV INTER_AREA by the whole factor, then "
            "INTER_LINEAR")  # fmt: skip
    if stored != size:
        rule += f"; then resize that {stored}x{stored} image to {size}x{size} the same way"
    return rule


def _preprocess_text(meta: dict[str, Any]) -> str:
    mean = ", ".join(f"{v:.4g}" for v in meta["mean"])
    std = ", ".join(f"{v:.4g}" for v in meta["std"])
    gray = "luma (0.299 R + 0.587 G + 0.114 B) in all 3 channels, " if meta["grayscale"] else ""
    size = meta["image_size"]
    resize = (f"resize whole to {size}x{size}" if meta["stored_size"] == size
              else f"resize whole to {meta['stored_size']}, then to {size}")  # fmt: skip
    return (
        f"RGB, {resize} (no crop; metadata 'resize'), {gray}(pixel/255 - mean) / std with "
        f"mean ({mean}), std ({std}); float32 (batch, 3, {size}, {size})"
    )


def _outputs_text(task: Any, names: tuple[str, ...], proto: Any) -> dict[str, str]:
    """Each output's shape (from the graph) and meaning."""
    shapes = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
              for o in proto.graph.output}  # fmt: skip
    if task.cfg.task == "classify":
        meaning = {"logits": "class logits in class_names order; softmax gives probabilities"}
    elif task.cfg.task == "iqa":
        low, high = task.mos_range
        meaning = {"mos": f"predicted MOS, clamped to [{low:g}, {high:g}]",
                   "standardised_mos": "the head's output: mos = clamp(standardised_mos * "
                                       "mos_std + mos_mean)"}  # fmt: skip
    else:
        meaning = {names[0]: "the image encoder's features (what the caption/answer head reads; "
                             "text decoding is not exported)"}  # fmt: skip
    return {name: f"({', '.join(str(d) for d in shapes.get(name, []))}) {meaning[name]}"
            for name in names}  # fmt: skip


def _save(proto: Any, metadata: dict[str, Any], path: Path, *, data_name: str) -> None:
    """One self-contained file; weights beside it (``data_name``) only past protobuf's 2 GB."""
    import onnx

    _set_metadata(proto, metadata)
    weights = sum(t.ByteSize() for t in proto.graph.initializer)
    onnx.save_model(proto, str(path), save_as_external_data=weights > 1.8 * 2**30,
                    location=data_name)  # fmt: skip


def _save_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Rewrite the metadata of a saved file (its external weights, if any, stay where they are)."""
    import onnx

    proto = onnx.load_model(str(path), load_external_data=False)
    _set_metadata(proto, metadata)
    onnx.save_model(proto, str(path))


def _set_metadata(proto: Any, metadata: dict[str, Any]) -> None:
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)


def _remove(partial: Path) -> None:
    """A file that failed its check (its external weights, if any, are overwritten next time)."""
    partial.unlink(missing_ok=True)


def _size(path: Path) -> int:
    extra = path.with_name(path.name + ".data")
    return path.stat().st_size + (extra.stat().st_size if extra.is_file() else 0)


# --- parity ---------------------------------------------------------------------------------------


def check_parity(
    path: Path, module: nn.Module, images: torch.Tensor, names: tuple[str, ...]
) -> tuple[float, float, tuple[int, ...]]:
    """(max abs difference, bound, batch sizes) of onnxruntime vs the PyTorch fp32 module on
    ``images``, at batch 1 and at the whole batch (the dynamic axis); ``UserError`` past the
    bound (``PARITY_TOLERANCE`` x each output's scale)."""
    session = make_session(path)
    worst, worst_bound, sizes = 0.0, 0.0, (1, len(images))
    for batch in (images[:1], images):
        with torch.no_grad():
            expected = module(batch)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(list(names), {"image": batch.numpy()})
        for name, want, have in zip(names, expected, got, strict=True):
            want = want.float().numpy()
            if have.shape != want.shape:
                raise UserError(f"ONNX output {name} has shape {have.shape}, PyTorch "
                                f"{want.shape} (batch {len(batch)}); not written")  # fmt: skip
            diff = float(np.abs(have - want).max()) if want.size else 0.0
            bound = PARITY_TOLERANCE * max(1.0, float(np.abs(want).max()) if want.size else 0.0)
            if not np.isfinite(diff) or diff > bound:
                raise UserError(f"ONNX output {name} differs from PyTorch by {diff:.3g} "
                                f"(bound {bound:.1e}, batch {len(batch)}); not written - "
                                "please report the model name")  # fmt: skip
            if diff >= worst:
                worst, worst_bound = diff, bound
    return worst, worst_bound or PARITY_TOLERANCE, sizes
