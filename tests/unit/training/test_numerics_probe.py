"""The numerics probe: timed fp32/bf16 steps of the run's model, cached per machine and input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from viewfinder.config import build_config
from viewfinder.tasks.classify import ClassifyTask
from viewfinder.training import precision
from viewfinder.training.precision import PROBE_FILE, measure_numerics, select_numerics


def _task(tmp_path: Path, **overrides) -> tuple[ClassifyTask, torch.nn.Module]:
    settings = {"model": "cnn", "image_size": 16, "batch_size": 4, "cache_dir": str(tmp_path)}
    cfg = build_config("classify", overrides={**settings, **overrides})
    task = ClassifyTask(cfg, tmp_path / "run")
    task.classes = ["a", "b", "c"]
    model, _ = task.build_model()
    return task, model


@pytest.fixture
def fake_probe(monkeypatch: pytest.MonkeyPatch) -> dict:
    """bf16 available; measuring returns ``state["figures"]`` and counts its calls."""
    state = {"calls": 0, "figures": {"fp32": 10.0, "bf16": 25.0}}

    def measure(model, task, cfg, channels_last, candidates):
        state["calls"] += 1
        assert candidates == ("fp32", "bf16")
        return dict(state["figures"])

    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(precision, "measure_numerics", measure)
    monkeypatch.setattr(precision, "cpu_busy", lambda: False)  # whatever else the machine runs
    return state


def test_probe_picks_the_faster_and_caches_it(tmp_path: Path, fake_probe: dict) -> None:
    task, model = _task(tmp_path)
    first = select_numerics(model, task, task.cfg, cuda=False)
    assert first.precision == "bf16" and first.channels_last is True
    assert (
        first.reason.startswith("probe measured") and "bf16 25.0, fp32 10.0 img/s" in first.reason
    )
    again = select_numerics(model, task, task.cfg, cuda=False)
    assert (again.precision, fake_probe["calls"]) == ("bf16", 1)
    assert again.reason.startswith("probe cached")
    ((key, figures),) = json.loads((tmp_path / PROBE_FILE).read_text()).items()
    assert figures == {"fp32": 10.0, "bf16": 25.0}
    assert all(part in key for part in ("torch", "cnn", "16 px", "batch 4", "train"))


def test_probe_can_choose_fp32(tmp_path: Path, fake_probe: dict) -> None:
    fake_probe["figures"] = {"fp32": 39.0, "bf16": 37.0}  # e.g. EfficientNet-Lite on AMX
    task, model = _task(tmp_path)
    assert select_numerics(model, task, task.cfg, cuda=False).precision == "fp32"


def test_near_tie_keeps_fp32(tmp_path: Path, fake_probe: dict) -> None:
    fake_probe["figures"] = {"fp32": 100.0, "bf16": 104.0}  # within the timing noise
    task, model = _task(tmp_path)
    assert select_numerics(model, task, task.cfg, cuda=False).precision == "fp32"


@pytest.mark.parametrize(
    "change",
    [{"image_size": 32}, {"batch_size": 8}, {"model": "cnn+attn"}, {"freeze_backbone": True}],
)
def test_probe_cache_is_per_model_size_batch_and_mode(
    tmp_path: Path, fake_probe: dict, change: dict
) -> None:
    task, model = _task(tmp_path)
    select_numerics(model, task, task.cfg, cuda=False)
    other, other_model = _task(tmp_path, **change)
    select_numerics(other_model, other, other.cfg, cuda=False)
    assert fake_probe["calls"] == 2
    assert len(json.loads((tmp_path / PROBE_FILE).read_text())) == 2


def test_rule_when_probing_is_off_or_not_wanted(tmp_path: Path, fake_probe: dict) -> None:
    cases = [({"precision_probe": False}, False), ({"precision": "fp32"}, False), ({}, True)]
    for overrides, cuda in cases:
        task, model = _task(tmp_path, **overrides)
        numerics = select_numerics(model, task, task.cfg, cuda=cuda)
        assert not numerics.reason.startswith("probe")
    task, model = _task(tmp_path)
    cached_only = select_numerics(model, task, task.cfg, cuda=False, measure=False)
    assert not cached_only.reason.startswith("probe")  # evaluate/predict never time steps
    assert fake_probe["calls"] == 0


def test_no_probe_without_native_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    task, model = _task(tmp_path)
    numerics = select_numerics(model, task, task.cfg, cuda=False)
    assert numerics.precision == "fp32" and "without native bf16" in numerics.reason


def test_measuring_leaves_the_model_and_the_rng_alone(tmp_path: Path) -> None:
    task, model = _task(tmp_path)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    figures = measure_numerics(model, task, task.cfg, True, ("fp32", "bf16"))
    assert set(figures) == {"fp32", "bf16"} and all(v > 0 for v in figures.values())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in model.parameters())


def test_probe_key_tells_apart_networks_of_one_model_name():
    from viewfinder.config import build_config
    from viewfinder.training.precision import probe_key

    cfg = build_config("caption", overrides={"model": "cnn"})
    lstm, transformer = probe_key(cfg, True, 1_000), probe_key(cfg, True, 2_000)
    assert lstm != transformer and "1000 params" in lstm


def test_a_probe_measured_on_a_busy_cpu_is_used_but_not_cached(
    tmp_path: Path, fake_probe: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "cpu_busy", lambda: True)
    task, model = _task(tmp_path)
    first = select_numerics(model, task, task.cfg, cuda=False)
    assert first.precision == "bf16" and "not cached: the CPU was busy" in first.reason
    assert not (tmp_path / PROBE_FILE).exists()
    select_numerics(model, task, task.cfg, cuda=False)
    assert fake_probe["calls"] == 2  # probed again


def test_cpu_busy_reads_the_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert precision.cpu_busy()
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert not precision.cpu_busy()
