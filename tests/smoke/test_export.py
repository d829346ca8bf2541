"""``viewfinder export``: tiny classify / iqa / caption runs exported to ONNX, checked against
PyTorch on the runs' own images (batch 1 and 3), their metadata, ``OnnxModule`` inside
``task.step``, and one-line errors for bad input. Offline: the runs are trained here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import viewfinder
from tests.helpers import run_cli
from tests.smoke.conftest import FAST
from viewfinder.api import Run
from viewfinder.errors import UserError
from viewfinder.export import (
    OnnxModule,
    check_format,
    export_onnx,
    load_onnx_run,
    preprocess_image,
)
from viewfinder.training.inference import load_trained

METADATA_KEYS = {
    "viewfinder_version", "task", "model", "exported", "exporter", "opset", "input", "image_size",
    "stored_size", "mean", "std", "pixel_scale", "grayscale", "resize", "preprocess", "outputs",
    "module_output", "weights", "parity",
}  # fmt: skip


@pytest.fixture(scope="module")
def classify_run(demo_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export-classify")
    run = viewfinder.train("classify", data=str(demo_data.classify), model="cnn",
                           output_dir=str(out), progress=False, **FAST)  # fmt: skip
    return run.path


@pytest.fixture(scope="module")
def iqa_run(demo_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export-iqa")
    run = viewfinder.train("iqa", data=str(demo_data.iqa), model="cnn", mos_range="0,10",
                           output_dir=str(out), progress=False, **FAST)  # fmt: skip
    return run.path


def _metadata(path: Path) -> dict:
    return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}


def _val_batch(run_dir: Path, count: int) -> tuple:
    """(task, fp32 PyTorch model, a val batch of ``count`` images as evaluation transforms it)."""
    task, model, _, _ = load_trained(run_dir, Run(run_dir).config)
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    dataset = task.dataset("val", train=False)
    batch = task.collate(dataset.__getitems__(list(range(count))))
    batch = task.transform_batch(batch, train=False)
    batch["records"] = [dataset.records[int(i)] for i in batch["index"]]
    return task, model, batch


def test_classify_export_parity_and_metadata(classify_run, tmp_path):
    result = export_onnx(classify_run, tmp_path / "m.onnx", check_images=3)
    assert result.path == tmp_path / "m.onnx" and result.size_bytes > 100_000
    assert result.max_abs_diff <= result.bound <= 1e-2
    assert result.checked_on == "3 val images" and result.batch_sizes == (1, 3)
    meta = _metadata(result.path)
    assert METADATA_KEYS | {"class_names"} <= set(meta)
    classes = json.loads((classify_run / "labels.json").read_text())["classes"]
    assert meta["class_names"] == classes and meta["task"] == "classify"
    assert meta["exported"] == "whole model" and meta["module_output"] == "logits"
    assert meta["input"] == {"name": "image", "dtype": "float32", "layout": "NCHW",
                             "channels": "RGB", "shape": ["batch", 3, 32, 32]}  # fmt: skip
    assert meta["image_size"] == 32 and meta["stored_size"] == 37  # augment=light: 1/7 margin
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406]) and "0-1" in meta["pixel_scale"]
    assert meta["viewfinder_version"] == viewfinder.__version__
    assert meta["parity"]["max_abs_diff"] == result.max_abs_diff
    assert any(line.startswith("parity: max |onnxruntime - PyTorch fp32|")
               for line in result.summary_lines())  # fmt: skip

    # independently of the exporter's own check: onnxruntime vs PyTorch at batch 1 and 3
    module, loaded = load_onnx_run(result.path)
    assert loaded == meta
    task, model, batch = _val_batch(classify_run, 3)
    for images in (batch["image"][:1], batch["image"]):
        with torch.no_grad():
            expected = model(images)
        got = module(images)
        assert got.shape == expected.shape and got.dtype == torch.float32
        assert (got - expected).abs().max().item() < 1e-4


def test_onnx_module_in_task_step_gives_predict_rows(classify_run, tmp_path):
    path = export_onnx(classify_run, tmp_path / "m.onnx", check_images=2).path
    module, _ = load_onnx_run(path)
    assert isinstance(module, OnnxModule) and not module.training
    assert next(module.parameters()).device.type == "cpu"
    task, model, batch = _val_batch(classify_run, 3)
    with torch.no_grad():
        want = task.step(model, batch)
        got = task.step(module, batch)
    assert float(got["loss"]) == pytest.approx(float(want["loss"]), abs=1e-4)
    rows_want = task.postprocess(want["outputs"], batch, probabilities=True)
    rows_got = task.postprocess(got["outputs"], batch, probabilities=True)
    assert [r["label"] for r in rows_got] == [r["label"] for r in rows_want]
    for a, b in zip(rows_got, rows_want, strict=True):
        assert a.keys() == b.keys() and a["id"] == b["id"]
        assert [a[k] for k in a if k.startswith("prob_")] == pytest.approx(
            [b[k] for k in b if k.startswith("prob_")], abs=1e-5
        )
    with pytest.raises(UserError, match="inference only"):
        module.train()


def test_metadata_preprocessing_reproduces_evaluation(classify_run, tmp_path):
    """The documented recipe (two whole-image resizes, then (x/255 - mean)/std) gives evaluation's
    own input tensor for a file."""
    meta = _metadata(export_onnx(classify_run, tmp_path / "m.onnx", check_images=2).path)
    _, _, batch = _val_batch(classify_run, 2)
    for record, expected in zip(batch["records"], batch["image"], strict=True):
        x = preprocess_image(record.path, meta)
        assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
        np.testing.assert_allclose(x[0], expected.numpy(), atol=1e-5)


def test_iqa_export_mos_outputs_and_step(iqa_run, tmp_path):
    result = export_onnx(iqa_run, check_images=3)
    assert result.path == iqa_run / "model.onnx" and result.max_abs_diff <= result.bound
    meta = _metadata(result.path)
    assert meta["mos_range"] == [0.0, 10.0] and meta["module_output"] == "standardised_mos"
    assert set(meta["outputs"]) == {"mos", "standardised_mos"} and "mos_std" in meta
    assert meta["stored_size"] == meta["image_size"] == 32  # augment=flip: no crop margin
    module, _ = load_onnx_run(iqa_run)  # a run folder finds its model.onnx
    task, model, batch = _val_batch(iqa_run, 3)
    with torch.no_grad():
        want, got = task.step(model, batch), task.step(module, batch)
        assert module(batch["image"]).shape == model(batch["image"]).shape == (3, 1)
    rows_want = task.postprocess(want["outputs"], batch)
    rows_got = task.postprocess(got["outputs"], batch)
    assert [r["img_name"] for r in rows_got] == [r["img_name"] for r in rows_want]
    assert [r["mos"] for r in rows_got] == pytest.approx([r["mos"] for r in rows_want], abs=2e-4)
    session = module.session  # the file's own MOS output is the task's
    mos = session.run(["mos"], {"image": batch["image"].numpy()})[0]
    assert mos.shape == (3,)
    np.testing.assert_allclose(mos, want["outputs"].numpy(), atol=1e-4)


@pytest.mark.slow
def test_caption_run_exports_its_image_encoder(demo_data, tmp_path):
    run = viewfinder.train("caption", data=str(demo_data.caption), model="cnn", min_count=1,
                           decoder="gru", output_dir=str(tmp_path / "runs"), progress=False,
                           **FAST)  # fmt: skip
    result = export_onnx(run.path, tmp_path / "encoder.onnx", check_images=3)
    assert result.max_abs_diff <= result.bound and result.checked_on == "3 val images"
    meta = _metadata(result.path)
    assert meta["exported"] == "image encoder" and list(meta["outputs"]) == ["features"]
    module, _ = load_onnx_run(result.path)
    features = module(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, 256, 2, 2)  # the cnn's grid: what the caption head reads


def test_torchscript_fallback_and_parity_failure(classify_run, tmp_path, monkeypatch):
    from viewfinder.export import onnx_export

    def fail(*args, **kwargs):
        raise RuntimeError("data-dependent control flow\nmore lines")

    monkeypatch.setattr(onnx_export, "_dynamo_export", fail)
    result = export_onnx(classify_run, tmp_path / "m.onnx", check_images=2)
    assert result.metadata["exporter"] == (
        "torchscript (the dynamo exporter failed: data-dependent control flow)"
    )
    assert result.max_abs_diff <= result.bound
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)  # any difference is too much
    before = (tmp_path / "m.onnx").read_bytes()
    with pytest.raises(UserError, match=r"m.onnx: ONNX output logits differs from PyTorch by "
                                        r".* not written") as caught:  # fmt: skip
        export_onnx(classify_run, tmp_path / "m.onnx", check_images=2)
    assert "\n" not in str(caught.value)
    assert (tmp_path / "m.onnx").read_bytes() == before  # the earlier good file is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.slow
def test_attention_head_exports(demo_data, tmp_path):
    run = viewfinder.train("classify", data=str(demo_data.classify), model="resnet18+attn",
                           output_dir=str(tmp_path / "runs"), progress=False,
                           **{**FAST, "epochs": 1})  # fmt: skip
    result = export_onnx(run.path, tmp_path / "attn.onnx", check_images=3)
    assert result.metadata["exporter"] == "dynamo" and result.max_abs_diff <= result.bound


def test_run_without_its_images_is_checked_on_noise(classify_run, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(classify_run, copy, ignore=shutil.ignore_patterns("*.onnx"))
    (copy / "split.csv").unlink()
    result = export_onnx(copy, check_images=4)
    assert result.checked_on.startswith("random input (run's images not found")
    assert result.batch_sizes == (1, 4) and result.max_abs_diff <= result.bound


def test_bad_inputs_are_one_line(classify_run, tmp_path):
    cases = [(tmp_path / "missing", "no such run folder"),
             (tmp_path, "not a run folder")]  # fmt: skip
    folds = tmp_path / "folds"
    (folds / "fold0").mkdir(parents=True)
    (folds / "folds.json").write_text("{}")
    cases.append((folds, r"is a fold set \(1 folds\): export each fold run"))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(classify_run / "config.yaml", unfinished)
    cases.append((unfinished, "no weights yet"))
    for path, message in cases:
        with pytest.raises(UserError, match=message) as caught:
            export_onnx(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(UserError, match="give an .onnx file name"):
        export_onnx(classify_run, tmp_path / "model.txt")
    with pytest.raises(UserError, match="--format 'torchscript': viewfinder exports onnx only"):
        check_format("torchscript")
    with pytest.raises(UserError, match="not found; export the run first"):
        load_onnx_run(tmp_path / "none.onnx")


@pytest.mark.slow
def test_cli_export(classify_run, tmp_path):
    done = run_cli("export", str(classify_run), "-o", "m.onnx", "--check-images", "2",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.onnx").is_file()
    assert "parity: max |onnxruntime - PyTorch fp32|" in done.stdout and "mean (" in done.stdout
    done = run_cli("export", str(classify_run), "--format", "coreml", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: --format 'coreml': viewfinder exports onnx only"
    ]
