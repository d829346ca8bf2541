"""``A&B`` concatenated backbones, the ``+mlp`` head and the ``+ridge`` name checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from viewfinder.config import ModelConfig
from viewfinder.errors import UserError
from viewfinder.models.backbones import IMAGENET_MEAN, IMAGENET_STD, create_backbone
from viewfinder.models.classifier import ModelSpec, build_classifier, parse_model_name
from viewfinder.models.frozen import frozen_parts
from viewfinder.models.heads import MLPHead, PooledClassifier
from viewfinder.models.multi_backbone import ConcatBackbones
from viewfinder.training.features import weights_digest


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_parse_names() -> None:
    assert parse_model_name("a&b") == ModelSpec("a&b", "linear")
    assert parse_model_name("a&b+mlp").backbones == ("a", "b")
    assert parse_model_name("resnet18+ridge") == ModelSpec("resnet18", "ridge")
    for bad in ("a&", "&b", "a&&b+mlp", "a+lasso"):
        with pytest.raises(UserError, match="A&B") as info:
            parse_model_name(bad)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["cnn&cnn", "cnn&cnn+mlp", "cnn&cnn+ridge"])
def test_concatenated_features_and_head(name: str) -> None:
    cfg = ModelConfig(name=name, freeze_backbone=True, mlp_hidden=16)
    model, note = build_classifier(cfg, 1, regression=True)
    assert isinstance(model, PooledClassifier) and isinstance(model.backbone, ConcatBackbones)
    assert note == "cnn: random init; cnn: random init"
    assert model.backbone.num_features == 512
    model.eval()
    features, head = frozen_parts(model)
    with torch.no_grad():
        assert features(_images()).shape == (2, 512)
        torch.testing.assert_close(model(_images()), head(features(_images())))
    assert isinstance(head, MLPHead) == name.endswith("+mlp")


def test_each_backbone_gets_its_own_normalisation() -> None:
    concat = ConcatBackbones(
        [create_backbone("cnn", num_classes=0), create_backbone("tf_efficientnet_lite0",
                                                               num_classes=0)]
    )  # fmt: skip
    seen = []
    for part in concat.parts:
        part.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    raw = torch.rand(1, 3, 32, 32)  # pixels in [0, 1]
    mean, std = (
        torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        concat.eval()((raw - mean) / std)
    torch.testing.assert_close(seen[0], (raw - mean) / std)  # cnn: ImageNet statistics
    torch.testing.assert_close(seen[1], (raw - 0.5) / 0.5)  # EfficientNet-Lite: 0.5 / 0.5
    assert not any(k.startswith(("scale", "shift")) for k in concat.state_dict())


def test_weights_per_backbone(tmp_path: Path) -> None:
    source = create_backbone("cnn", num_classes=0)
    path = tmp_path / "cnn.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    cfg = ModelConfig(name="cnn&cnn", freeze_backbone=True, weights=f"none&{path}")
    model, note = build_classifier(cfg, 1, regression=True)
    second = model.backbone.parts[1].state_dict()
    assert all(torch.equal(second[k], v) for k, v in source.state_dict().items())
    assert "cnn: random init" in note and f"tensors from {path}" in note
    with pytest.raises(UserError, match="1 file\\(s\\) for 2 backbones"):
        build_classifier(ModelConfig(name="cnn&cnn", freeze_backbone=True, weights=str(path)), 1)


def test_mlp_head_on_pooled_features() -> None:
    model, _ = build_classifier(ModelConfig(name="resnet10t+mlp", mlp_hidden=8), 3)
    assert isinstance(model.head, MLPHead) and model.head.fc.out_features == 3
    model.eval()
    with torch.no_grad():
        assert model(_images()).shape == (2, 3)


def test_heads_on_one_backbone_share_the_feature_digest() -> None:
    digests = set()
    for name in ("cnn", "cnn+mlp", "cnn+ridge"):
        torch.manual_seed(0)
        model, _ = build_classifier(
            ModelConfig(name=name, freeze_backbone=True), 1, regression=True
        )
        digests.add(weights_digest(model, skip=frozen_parts(model)[1]))
    assert len(digests) == 1  # one cached extraction serves NAME, NAME+mlp and NAME+ridge


@pytest.mark.parametrize(
    ("keys", "regression", "match"),
    [
        ({"name": "cnn+ridge"}, True, "add freeze_backbone=true"),
        ({"name": "cnn+ridge", "freeze_backbone": True}, False, "regression heads"),
        ({"name": "cnn&cnn"}, True, "concatenated backbones train only a head"),
        ({"name": "cnn&cnn+attn", "freeze_backbone": True}, True, "give pooled features"),
    ],
)
def test_bad_combinations_are_one_line(keys: dict, regression: bool, match: str) -> None:
    with pytest.raises(UserError, match=match) as info:
        build_classifier(ModelConfig(**keys), 1, regression=regression)
    assert "\n" not in str(info.value)
