from __future__ import annotations

import os
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from viewfinder.config import ModelConfig
from viewfinder.errors import UserError
from viewfinder.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PlainCNN,
    check_model_name,
    create_backbone,
    data_config,
    has_depthwise_conv,
    load_weights,
)
from viewfinder.models.classifier import (
    ModelSpec,
    backbone_of,
    build_classifier,
    count_parameters,
    parse_model_name,
)
from viewfinder.models.heads import AttentionHead, ImageClassifier

NUM_CLASSES = 5
CLASSIFIER_KEYS = {"fc.weight", "fc.bias"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tensors here are tiny: one thread avoids thread-pool stalls when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


# --- building ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn", "cnn+attn", "resnet18", "resnet18+attn"])
def test_classifier_gives_logits(name: str) -> None:
    model, note = build_classifier(ModelConfig(name=name, attention_heads=2), NUM_CLASSES)
    assert note == "random init"
    model.eval()
    with torch.no_grad():
        logits = model(_images(batch=3))
    assert logits.shape == (3, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    assert isinstance(model, ImageClassifier) == name.endswith("+attn")
    assert count_parameters(model) > 0


def test_attn_model_wraps_a_featureless_backbone() -> None:
    model, _ = build_classifier(ModelConfig(name="resnet18+attn"), NUM_CLASSES)
    backbone = backbone_of(model)
    assert backbone is model.backbone
    assert backbone.num_features == 512
    features = backbone.forward_features(_images())
    assert features.shape[:2] == (2, 512)
    plain, _ = build_classifier(ModelConfig(name="resnet18"), NUM_CLASSES)
    assert backbone_of(plain) is plain


def test_plain_cnn_follows_the_timm_contract() -> None:
    model = PlainCNN(0)
    assert model.num_features == 256
    features = model.forward_features(_images())
    assert features.shape == (2, 256, 2, 2)  # four 2x poolings of 32 px
    assert model(_images()).shape == (2, 256)  # no classifier: pooled features
    assert PlainCNN(3)(_images()).shape == (2, 3)


def test_data_config() -> None:
    assert data_config(PlainCNN(2)) == (IMAGENET_MEAN, IMAGENET_STD)
    mean, std = data_config(create_backbone("resnet18", num_classes=2))
    assert len(mean) == 3 and len(std) == 3


# --- attention head ------------------------------------------------------------------------------


def test_attention_head_on_feature_map() -> None:
    head = AttentionHead(64, 3, heads=4)
    assert isinstance(head.proj, nn.Identity)
    assert head.attn.num_heads == 4
    assert head(torch.randn(2, 64, 4, 4)).shape == (2, 3)


def test_attention_head_on_tokens() -> None:
    head = AttentionHead(48, 7, heads=4)
    assert head(torch.randn(2, 10, 48)).shape == (2, 7)


def test_attention_head_projects_wide_inputs() -> None:
    head = AttentionHead(96, 3, heads=4, max_dim=32)
    assert isinstance(head.proj, nn.Linear)
    assert (head.proj.in_features, head.proj.out_features) == (96, 32)
    assert head.attn.embed_dim == 32
    assert head(torch.randn(2, 96, 3, 3)).shape == (2, 3)
    assert head(torch.randn(2, 5, 96)).shape == (2, 3)


def test_attention_head_count_divides_the_width() -> None:
    head = AttentionHead(30, 2, heads=4)  # 30 is not divisible by 4: the nearest lower divisor
    assert head.attn.num_heads == 3
    assert head(torch.randn(1, 30, 2, 2)).shape == (1, 2)


# --- names ---------------------------------------------------------------------------------------


def test_parse_model_name() -> None:
    assert parse_model_name("resnet18") == ModelSpec("resnet18", "linear")
    assert parse_model_name(" resnet18+attn ") == ModelSpec("resnet18", "attn")


@pytest.mark.parametrize("name", ["resnet18+foo", "+attn", "resnet18+"])
def test_parse_model_name_errors(name: str) -> None:
    with pytest.raises(UserError, match="NAME\\+attn") as info:
        parse_model_name(name)
    assert repr(name) in str(info.value)


def test_unknown_model_name_suggests_the_nearest() -> None:
    with pytest.raises(UserError) as info:
        build_classifier(ModelConfig(name="resnet19"), NUM_CLASSES)
    message = str(info.value)
    assert "unknown model 'resnet19'" in message
    assert "did you mean 'resnet" in message
    assert "\n" not in message
    with pytest.raises(UserError, match="'resnet19'"):
        build_classifier(ModelConfig(name="resnet19+attn"), NUM_CLASSES)


def test_known_names_pass_the_check() -> None:
    check_model_name("cnn")
    check_model_name("resnet18")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("mobilenetv3_small_050", True), ("efficientnet_b0", True), ("resnet18", False)],
)
def test_has_depthwise_conv(name: str, expected: bool) -> None:
    assert has_depthwise_conv(create_backbone(name, num_classes=0)) is expected


def test_plain_cnn_has_no_depthwise_conv() -> None:
    assert has_depthwise_conv(PlainCNN(2)) is False


# --- pretrained weights from a local file (no network) -------------------------------------------


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A 1000-class timm resnet18 saved as safetensors and as a torch state dict."""
    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    state = {k: v.detach().clone().contiguous() for k, v in source.state_dict().items()}
    folder = tmp_path_factory.mktemp("weights")
    save_file(state, str(folder / "weights.safetensors"))
    torch.save(state, folder / "weights.pth")
    return {"state": state, "folder": folder}


def _assert_backbone_equals(backbone: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = backbone.state_dict()
    compared = 0
    for key, tensor in state.items():
        if key in CLASSIFIER_KEYS:
            continue
        assert torch.equal(own[key], tensor), key
        compared += 1
    assert compared == len(state) - len(CLASSIFIER_KEYS)


@pytest.mark.parametrize("filename", ["weights.safetensors", "weights.pth"])
def test_weights_file_loads_backbone_and_skips_classifier(
    imagenet_like: dict, filename: str
) -> None:
    path = imagenet_like["folder"] / filename
    model, note = build_classifier(ModelConfig(name="resnet18", weights=str(path)), NUM_CLASSES)
    state = imagenet_like["state"]
    _assert_backbone_equals(model, state)
    assert model.fc.weight.shape == (NUM_CLASSES, 512)  # the 1000-class head was not forced in
    assert not torch.equal(model.fc.weight[:NUM_CLASSES], state["fc.weight"][:NUM_CLASSES])
    assert note.startswith(f"{len(state) - 2} tensors from {path}")
    assert "2 skipped" in note and "fc.weight" in note and "fc.bias" in note
    assert model(_images()).shape == (2, NUM_CLASSES)


def test_weights_file_into_attention_model(imagenet_like: dict) -> None:
    path = imagenet_like["folder"] / "weights.safetensors"
    model, note = build_classifier(
        ModelConfig(name="resnet18+attn", weights=str(path)), NUM_CLASSES
    )
    _assert_backbone_equals(model.backbone, imagenet_like["state"])
    assert "skipped" in note
    assert model(_images()).shape == (2, NUM_CLASSES)


def test_a_models_own_checkpoint_loads_its_head_too(tmp_path: Path) -> None:
    source, _ = build_classifier(ModelConfig(name="cnn+attn"), NUM_CLASSES)
    path = tmp_path / "best.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model, note = build_classifier(ModelConfig(name="cnn+attn", weights=str(path)), NUM_CLASSES)
    assert note == f"{len(source.state_dict())} tensors from {path}"
    for key, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key
    other, note = build_classifier(ModelConfig(name="cnn+attn", weights=str(path)), 3)
    assert note.endswith("(2 skipped: head.fc.bias, head.fc.weight)")  # another class count
    plain = {k.removeprefix("backbone."): v.contiguous() for k, v in source.state_dict().items()}
    save_file(plain, str(path))  # a file without backbone. keys: its head.* is not this head's
    fresh, _ = build_classifier(ModelConfig(name="cnn+attn", weights=str(path)), NUM_CLASSES)
    assert not torch.equal(fresh.head.fc.weight, source.head.fc.weight)


def test_weights_with_prefixes_and_wrapping(tmp_path: Path) -> None:
    source = PlainCNN(3)
    state = {f"module.{k}": v.detach().clone() for k, v in source.state_dict().items()}
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    target = PlainCNN(3)
    loaded, skipped = load_weights(target, path)
    assert (loaded, skipped) == (len(state), [])
    for key, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], tensor)


def test_file_without_matching_tensors(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"encoder.layer0.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(UserError, match="no tensor matches") as info:
        build_classifier(ModelConfig(name="resnet18", weights=str(path)), NUM_CLASSES)
    assert str(path) in str(info.value)


def test_missing_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.safetensors"
    with pytest.raises(UserError, match="weights file not found") as info:
        build_classifier(ModelConfig(name="cnn", weights=str(path)), NUM_CLASSES)
    assert str(path) in str(info.value)


class _Payload:
    """Unpickling this would create a folder: proof that the file was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_pickled_objects_are_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "payload": _Payload(marker)}, path)
    with pytest.raises(UserError, match="not a readable weights file") as info:
        build_classifier(ModelConfig(name="resnet18", weights=str(path)), NUM_CLASSES)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("notes.pth", b"this is not a checkpoint"),
        ("labels.pt", b"id,label\n1,apple\n"),
        ("empty.pth", b""),
        ("junk.safetensors", b"this is not a checkpoint"),
        ("empty.safetensors", b""),
    ],
)
def test_corrupt_weights_file(tmp_path: Path, filename: str, content: bytes) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a readable") as info:
        build_classifier(ModelConfig(name="cnn", weights=str(path)), NUM_CLASSES)
    assert str(path) in str(info.value)


def test_torch_file_that_is_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(UserError, match="expected a state dict"):
        load_weights(PlainCNN(2), path)
