"""evaluate/predict score with the numerics the run trained with (summary.json), so a probe
measured on a busy CPU (not cached) cannot make evaluate disagree with training's validation."""

from __future__ import annotations

import json

import torch

from viewfinder.training.inference import trained_numerics


def test_numerics_come_from_the_run(tmp_path):
    assert trained_numerics(tmp_path, torch.device("cpu")) is None  # no summary yet
    (tmp_path / "summary.json").write_text(json.dumps({"precision": "fp32", "channels_last": True}))
    numerics = trained_numerics(tmp_path, torch.device("cpu"))
    assert (
        numerics.precision == "fp32" and numerics.channels_last and numerics.reason == "as trained"
    )
    assert trained_numerics(tmp_path, torch.device("cuda")) is None  # another device: its rule
    (tmp_path / "summary.json").write_text(json.dumps({"precision": "fp16"}))
    assert trained_numerics(tmp_path, torch.device("cpu")) is None
