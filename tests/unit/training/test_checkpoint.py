from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from viewfinder.config import TrainConfig
from viewfinder.errors import UserError
from viewfinder.training import checkpoint
from viewfinder.training.checkpoint import (
    load_train_state,
    load_weights_file,
    save_train_state,
    save_weights,
)
from viewfinder.training.optim import build_optimizer, build_scheduler

PROGRESS = {"epoch": 2, "step": 5, "best": 0.75, "best_epoch": 1, "skipped_images": 0}


def _model(out: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, out))


def _batches(count: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 6, generator=generator) for _ in range(count)]


def _steps(model: nn.Module, optimizer, scheduler, batches: list[torch.Tensor]) -> None:
    for x in batches:
        model(x).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()


def _setup(cfg: TrainConfig, seed: int = 0):
    torch.manual_seed(seed)
    model = _model()
    optimizer = build_optimizer(model, cfg)
    return model, optimizer, build_scheduler(optimizer, cfg, steps_per_epoch=4)


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    theirs = b.state_dict()
    assert a.state_dict().keys() == theirs.keys()
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name


def _as_json(value):
    return json.loads(json.dumps(value))


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(optimizer="adamw", scheduler="cosine", epochs=3, warmup_epochs=0.5),
        TrainConfig(optimizer="sgd", scheduler="onecycle", epochs=3),
    ],
    ids=["adamw-cosine", "sgd-onecycle"],
)
def test_train_state_round_trip(tmp_path: Path, cfg: TrainConfig) -> None:
    model, optimizer, scheduler = _setup(cfg)
    _steps(model, optimizer, scheduler, _batches(3, seed=1))
    path = tmp_path / "last.state.safetensors"
    save_train_state(path, optimizer, scheduler, PROGRESS)
    expected_random = torch.rand(5)  # what the RNG gives right after the save

    fresh_model, fresh_optimizer, fresh_scheduler = _setup(cfg, seed=123)
    fresh_model.load_state_dict(model.state_dict())
    progress = load_train_state(path, fresh_optimizer, fresh_scheduler)

    assert progress == PROGRESS
    assert torch.equal(torch.rand(5), expected_random)  # torch RNG restored

    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert saved["state"].keys() == loaded["state"].keys()
    assert saved["state"]  # the optimizer had state to restore
    for index, per_param in saved["state"].items():
        assert per_param.keys() == loaded["state"][index].keys()
        for key, value in per_param.items():
            restored = loaded["state"][index][key]
            if torch.is_tensor(value):
                assert restored.dtype == value.dtype, (index, key)
                assert torch.equal(restored, value), (index, key)
            else:
                assert restored == value, (index, key)
    # JSON keeps every value; only tuples (AdamW's betas) come back as lists.
    assert _as_json(loaded["param_groups"]) == _as_json(saved["param_groups"])
    assert [g["lr"] for g in fresh_optimizer.param_groups] == [
        g["lr"] for g in optimizer.param_groups
    ]

    assert fresh_scheduler.last_epoch == scheduler.last_epoch == 3
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()

    # Resuming continues exactly where the original run would have gone.
    more = _batches(2, seed=2)
    _steps(model, optimizer, scheduler, more)
    _steps(fresh_model, fresh_optimizer, fresh_scheduler, more)
    _assert_same_weights(model, fresh_model)
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()


def test_missing_train_state(tmp_path: Path) -> None:
    _, optimizer, scheduler = _setup(TrainConfig())
    with pytest.raises(UserError, match="last.state.safetensors missing"):
        load_train_state(tmp_path / "last.state.safetensors", optimizer, scheduler)


def test_weights_round_trip_with_metadata(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model()
    path = tmp_path / "best.safetensors"
    save_weights(model, path, metadata={"epoch": 4, "classes": ["a", "b"]})
    other = _model()
    load_weights_file(other, path)
    _assert_same_weights(model, other)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert json.loads(metadata["epoch"]) == 4
    assert json.loads(metadata["classes"]) == ["a", "b"]


def test_load_into_model_with_other_shapes(tmp_path: Path) -> None:
    path = tmp_path / "best.safetensors"
    save_weights(_model(out=3), path)
    with pytest.raises(UserError, match="does not fit the model") as info:
        load_weights_file(_model(out=5), path)  # same names, other class count
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_load_into_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "best.safetensors"
    save_weights(_model(), path)
    with pytest.raises(UserError, match="does not fit the model"):
        load_weights_file(nn.Sequential(nn.Linear(6, 8)), path)


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="checkpoint not found"):
        load_weights_file(_model(), tmp_path / "best.safetensors")


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(TrainConfig())
    _steps(model, optimizer, scheduler, _batches(1, seed=0))
    for _ in range(2):  # the second round replaces existing files
        save_weights(model, tmp_path / "last.safetensors")
        save_train_state(tmp_path / "last.state.safetensors", optimizer, scheduler, PROGRESS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last.safetensors",
        "last.state.safetensors",
    ]


def test_interrupted_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = _model()
    path = tmp_path / "last.safetensors"
    save_weights(model, path)
    before = path.read_bytes()

    def crash(model, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_model", crash)
    with pytest.raises(KeyboardInterrupt):
        save_weights(_model(), path)
    assert path.read_bytes() == before


def test_resumed_optimizer_state_keeps_channels_last_layout(tmp_path):
    """Fused AdamW walks a weight and its moments as raw memory: layouts must match on resume."""
    import torch
    from torch import nn

    from viewfinder.training.checkpoint import load_train_state, save_train_state

    def make():
        torch.manual_seed(0)
        conv = nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
        return conv, torch.optim.AdamW(conv.parameters(), lr=0.1, fused=True)

    conv, opt = make()
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    conv(x).square().mean().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    save_train_state(tmp_path / "s.safetensors", opt, sched, {"epoch": 0})
    conv2, opt2 = make()
    conv2.load_state_dict(conv.state_dict())
    load_train_state(
        tmp_path / "s.safetensors", opt2, torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0)
    )
    for p2 in conv2.parameters():
        assert opt2.state[p2]["exp_avg"].stride() == p2.stride()
    for o in (opt, opt2):
        o.zero_grad()
    conv(x).square().mean().backward()
    conv2(x).square().mean().backward()
    opt.step()
    opt2.step()
    torch.testing.assert_close(conv2.weight, conv.weight, rtol=0, atol=0)


def test_feature_cache_key_changes_with_the_feature_code_version(monkeypatch, tmp_path):
    from viewfinder.models.backbones import PlainCNN
    from viewfinder.training import features

    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    model = PlainCNN(num_classes=2)
    before = features.feature_key(model, [image], {"model": "cnn:pooled"})
    monkeypatch.setattr(features, "FEATURES_VERSION", features.FEATURES_VERSION + 1)
    assert features.feature_key(model, [image], {"model": "cnn:pooled"}) != before
