from __future__ import annotations

import pytest
import torch
from torch import nn

from viewfinder.config import TrainConfig
from viewfinder.errors import UserError
from viewfinder.models.backbones import PlainCNN, create_backbone
from viewfinder.training import precision
from viewfinder.training.precision import Numerics, choose_numerics, cpu_supports_bf16


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return create_backbone("resnet18", num_classes=0)


@pytest.fixture(scope="module")
def mobilenet() -> nn.Module:
    return create_backbone("mobilenetv3_small_050", num_classes=0)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 4))


def test_fp16_on_cpu_is_refused(resnet: nn.Module) -> None:
    with pytest.raises(UserError, match="precision=fp16 needs a CUDA GPU"):
        choose_numerics(resnet, TrainConfig(precision="fp16"), cuda=False)


@pytest.mark.parametrize("wanted", ["fp32", "bf16"])
def test_explicit_precision_is_respected(
    resnet: nn.Module, mobilenet: nn.Module, wanted: str
) -> None:
    for backbone in (resnet, mobilenet):
        numerics = choose_numerics(backbone, TrainConfig(precision=wanted), cuda=False)
        assert numerics.precision == wanted
        assert numerics.reason.startswith("set by config")


def test_explicit_bf16_on_cpu_without_bf16_warns_in_reason(
    resnet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    numerics = choose_numerics(resnet, TrainConfig(precision="bf16"), cuda=False)
    assert numerics.precision == "bf16"
    assert "emulates bf16" in numerics.reason


def test_auto_on_cpu_depthwise_net_is_fp32(
    mobilenet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    numerics = choose_numerics(mobilenet, TrainConfig(), cuda=False)
    assert numerics.precision == "fp32"
    assert "depthwise" in numerics.reason


def test_auto_on_cpu_resnet_follows_cpu_bf16_support(resnet: nn.Module) -> None:
    numerics = choose_numerics(resnet, TrainConfig(), cuda=False)
    assert numerics.precision == ("bf16" if cpu_supports_bf16() else "fp32")


@pytest.mark.parametrize("supported", [True, False])
def test_auto_on_cpu_resnet_both_ways(
    resnet: nn.Module, monkeypatch: pytest.MonkeyPatch, supported: bool
) -> None:
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: supported)
    numerics = choose_numerics(resnet, TrainConfig(), cuda=False)
    assert numerics.precision == ("bf16" if supported else "fp32")


@pytest.mark.parametrize(("supported", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda(
    resnet: nn.Module, monkeypatch: pytest.MonkeyPatch, supported: bool, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    numerics = choose_numerics(resnet, TrainConfig(), cuda=True)
    assert numerics.precision == expected
    assert numerics.channels_last is True


def test_fp16_allowed_on_cuda(resnet: nn.Module) -> None:
    numerics = choose_numerics(resnet, TrainConfig(precision="fp16"), cuda=True)
    assert numerics.precision == "fp16"
    assert numerics.accelerate_mixed_precision == "fp16"


def test_channels_last_auto_for_conv_nets(resnet: nn.Module, mobilenet: nn.Module) -> None:
    for backbone in (resnet, mobilenet, PlainCNN(0)):
        assert choose_numerics(backbone, TrainConfig(), cuda=False).channels_last is True
    assert choose_numerics(_mlp(), TrainConfig(), cuda=False).channels_last is False


def test_channels_last_explicit(resnet: nn.Module) -> None:
    off = choose_numerics(resnet, TrainConfig(channels_last=False), cuda=False)
    on = choose_numerics(_mlp(), TrainConfig(channels_last=True), cuda=False)
    assert (off.channels_last, on.channels_last) == (False, True)


def test_plain_cnn_is_not_depthwise() -> None:
    numerics = choose_numerics(PlainCNN(0), TrainConfig(), cuda=False)
    assert numerics.precision == ("bf16" if cpu_supports_bf16() else "fp32")


def test_accelerate_names() -> None:
    names = {p: Numerics(p, False, "").accelerate_mixed_precision for p in ("fp32", "bf16", "fp16")}
    assert names == {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def test_cpu_supports_bf16_is_a_bool() -> None:
    assert isinstance(cpu_supports_bf16(), bool)
