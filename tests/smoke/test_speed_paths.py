"""The speed paths end to end: the image cache, frozen-backbone features, torch.compile off/on."""

from __future__ import annotations

import math

import pytest

import viewfinder
from tests.smoke.conftest import FAST
from viewfinder.errors import UserError


def _train(demo_data, runs_dir, **overrides):
    settings = {**FAST, "progress": False, "output_dir": str(runs_dir), **overrides}
    return viewfinder.train("classify", data=str(demo_data.classify), **settings)


def test_second_run_reads_the_cache(demo_data, runs_dir):
    first = _train(demo_data, runs_dir, model="cnn", image_size=24)
    second = _train(demo_data, runs_dir, model="cnn", image_size=24)
    assert second.summary["status"] == "completed"
    # same decoded pixels -> the same (deterministic) first epoch
    assert first.metrics[0]["val_loss"] == pytest.approx(second.metrics[0]["val_loss"], abs=1e-6)


def test_cache_off_matches_cache_on(demo_data, runs_dir):
    on = _train(demo_data, runs_dir, model="cnn", deterministic=True)
    off = _train(demo_data, runs_dir, model="cnn", deterministic=True, cache=False)
    assert off.metrics[0]["val_loss"] == pytest.approx(on.metrics[0]["val_loss"], abs=1e-6)


@pytest.mark.parametrize("model", ["cnn", "resnet18", "cnn+attn"])
def test_frozen_backbone_trains_only_the_head(demo_data, runs_dir, model):
    run = _train(
        demo_data, runs_dir, model=model, freeze_backbone=True, precision="fp32", epochs=3,
        max_steps_per_epoch=None,
    )  # fmt: skip
    assert run.summary["status"] == "completed"
    assert "backbone frozen" in run.summary["weights"]
    # the image path (evaluate) scores exactly what the feature path scored during training
    result = run.evaluate()
    assert math.isclose(result["accuracy"], run.summary["metrics"]["accuracy"], abs_tol=1e-6)


def test_frozen_features_are_cached_and_flip_views_work(demo_data, runs_dir):
    first = _train(demo_data, runs_dir, model="cnn", freeze_backbone=True, feature_flip=True)
    again = _train(demo_data, runs_dir, model="cnn", freeze_backbone=True, feature_flip=True)
    assert first.summary["status"] == again.summary["status"] == "completed"
    assert first.metrics[-1]["val_loss"] == pytest.approx(again.metrics[-1]["val_loss"], rel=1e-5)


def test_compile_option_trains(demo_data, runs_dir, monkeypatch):
    """``compile=true`` trains and checkpoints (state_dict keys unchanged). Dynamo traces and AOT
    autograd runs as in real use; the ``aot_eager`` backend skips inductor's C++ code generation,
    which took ~60 s of the suite on a cold compile cache and is torch's to test, not ours."""
    pytest.importorskip("torch._dynamo")
    import torch

    compile_module = torch.nn.Module.compile

    def aot_eager(self, *args, **kwargs):
        return compile_module(self, *args, **{**kwargs, "backend": "aot_eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", aot_eager)
    run = _train(demo_data, runs_dir, model="cnn", compile=True, epochs=1, max_steps_per_epoch=1)
    assert run.summary["status"] == "completed"
    assert (run.path / "best.safetensors").is_file()


def test_memory_budget_stops_resumably(demo_data, runs_dir):
    with pytest.raises(UserError, match="max_rss_gb"):
        _train(demo_data, runs_dir, model="cnn", max_rss_gb=0.01)
    run_dir = next((runs_dir / "classify").iterdir())
    assert (run_dir / "last.state.safetensors").is_file()  # resumable with a bigger budget
