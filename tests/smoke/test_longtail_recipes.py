"""Every long-tail switch end to end on a long-tailed demo set: losses, samplers, mixup/cutmix,
post-hoc re-balancing, classifier re-training (cRT), label maps and the long-tail views."""

from __future__ import annotations

import json

import pytest

import viewfinder
from tests.smoke.conftest import FAST
from viewfinder.data.demo import generate_demo
from viewfinder.errors import UserError
from viewfinder.training.posthoc import _is_adjusted


@pytest.fixture(scope="module")
def long_tail(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("lt") / "d", count=120, size=40, long_tail=8.0)


def _train(data, runs_dir, **overrides):
    settings = {**FAST, "model": "cnn", "progress": False, "output_dir": str(runs_dir)}
    return viewfinder.train("classify", data=str(data.classify), **{**settings, **overrides})


@pytest.mark.parametrize(
    "recipe",
    [
        {"loss": "focal", "sampler": "inverse"},
        {"loss": "ce", "class_weights": "effective", "sampler": "sqrt"},
        {"loss": "balanced_softmax", "sampler": "repeat_factor"},
        {"loss": "logit_adjusted", "logit_tau": 0.5, "sampler": "effective"},
        {"mixup": 0.2, "cutmix": 1.0, "augment": "strong"},
    ],
)
def test_recipe_trains(long_tail, runs_dir, recipe):
    run = _train(long_tail, runs_dir, **recipe)
    assert run.summary["status"] == "completed"
    assert {"head_accuracy", "tail_accuracy"} <= set(run.summary["metrics"])


@pytest.mark.parametrize("method", ["logit_adjust", "tau_norm"])
def test_posthoc_writes_adjusted_weights(long_tail, runs_dir, method):
    run = _train(long_tail, runs_dir, posthoc=method, max_steps_per_epoch=None)
    posthoc = run.summary["posthoc"]
    assert posthoc["method"] == method and posthoc["tau"] >= 0
    assert (run.path / "best.raw.safetensors").is_file() and _is_adjusted(
        run.path / "best.safetensors"
    )
    table = json.loads((run.path / "posthoc.json").read_text())["table"]
    assert max(score for _, score in table) == pytest.approx(posthoc["val_after"])
    # evaluate uses the adjusted weights, and the summary shows what it scores. (Not exactly
    # val_after: tuning scores float32 logits of the captured features, the model's own head may
    # run in bf16, and this barely trained model's logits are near-ties.)
    metric = posthoc["metric"]
    assert run.evaluate()[metric] == pytest.approx(run.summary["metrics"][metric], abs=1e-6)


def test_class_bias_posthoc_added_to_a_finished_run(long_tail, runs_dir):
    """``train --resume RUN posthoc=class_bias``: no training, the raw best weights are tuned."""
    run = _train(long_tail, runs_dir, max_steps_per_epoch=None)
    raw = (run.path / "best.safetensors").read_bytes()
    metrics_lines = (run.path / "metrics.jsonl").read_text()
    resumed = viewfinder.resume(run.path, progress=False, posthoc="class_bias")
    posthoc = resumed.summary["posthoc"]
    classes = json.loads((run.path / "labels.json").read_text())["classes"]
    assert posthoc["method"] == "class_bias" and len(posthoc["offsets"]) == len(classes)
    assert posthoc["val_after"] >= posthoc["val_logit_adjust"] >= posthoc["val_before"]
    assert (run.path / "best.raw.safetensors").read_bytes() == raw
    assert (run.path / "metrics.jsonl").read_text() == metrics_lines  # no epoch was run
    metric = posthoc["metric"]
    assert resumed.evaluate()[metric] == pytest.approx(resumed.summary["metrics"][metric], abs=1e-6)
    # Tuning again starts from the raw weights, not from the adjusted ones: same offsets.
    again = viewfinder.resume(run.path, progress=False, posthoc="class_bias")
    assert again.summary["posthoc"]["offsets"] == posthoc["offsets"]
    with pytest.raises(UserError, match="not 'model'"):
        viewfinder.resume(run.path, progress=False, model="resnet18")


def test_crt_second_stage(long_tail, runs_dir):
    stage1 = _train(long_tail, runs_dir)
    crt = _train(
        long_tail, runs_dir, weights=str(stage1.path / "best.safetensors"), freeze_backbone=True,
        reinit_head=True, sampler="inverse",
    )  # fmt: skip
    assert "classifier re-initialised" in crt.summary["weights"]
    assert "backbone frozen" in crt.summary["weights"]


def test_label_map_trains_coarse_labels(long_tail, runs_dir, tmp_path):
    classes = sorted(p.name for p in (long_tail.classify / "train").iterdir())
    mapping = tmp_path / "map.csv"
    mapping.write_text("fine,coarse\n" + "".join(f"{c},{'a' if i % 2 else 'b'}\n"
                                                  for i, c in enumerate(classes)))  # fmt: skip
    run = _train(long_tail, runs_dir, label_map=str(mapping))
    assert json.loads((run.path / "labels.json").read_text())["classes"] == ["a", "b"]


def test_evaluate_writes_long_tail_views(long_tail, runs_dir):
    run = _train(long_tail, runs_dir)
    result = run.evaluate()
    assert "tail_accuracy" in result
    files = {p.name for p in viewfinder.api.evaluation_dir(run).rglob("*.png")}
    assert "confusion_matrix_normalized.png" in files


def test_label_map_fine_level_reports_coarse_metrics(long_tail, runs_dir, tmp_path):
    classes = sorted(p.name for p in (long_tail.classify / "train").iterdir())
    mapping = tmp_path / "map.csv"
    mapping.write_text("".join(f"{c},{'a' if i % 2 else 'b'}\n" for i, c in enumerate(classes)))
    run = _train(long_tail, runs_dir, label_map=str(mapping), label_level="fine")
    result = run.evaluate()
    assert len(json.loads((run.path / "labels.json").read_text())["classes"]) == len(classes)
    assert 0.0 <= result["coarse_accuracy"] <= 1.0
    assert result["coarse_accuracy"] >= result["accuracy"] - 1e-9  # coarse is never harder
