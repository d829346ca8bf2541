"""CLIP through open_clip: name parsing, a tiny random-init model built offline, the image encoder
as a backbone, and zero-shot logits checked against a hand computation. Nothing downloads: the
tiny architecture is registered from a config file written here, and sockets refuse to connect.
"""

from __future__ import annotations

import json
import socket

import open_clip
import pytest
import timm.data
import torch
import torch.nn.functional as F

from viewfinder.errors import UserError
from viewfinder.models.backbones import data_config
from viewfinder.models.classifier import backbone_of
from viewfinder.models.clip import (
    DEFAULT_TEMPLATES,
    CLIPImageEncoder,
    ZeroShotClassifier,
    _create_model,
    build_zero_shot,
    create_clip,
    is_clip_name,
    parse_clip_name,
    readable_class_name,
)

TINY = "vf-tiny-test"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CLASSES = ["scratch_mark", "fine-crack", "dent"]


@pytest.fixture(scope="module", autouse=True)
def offline_one_thread(tmp_path_factory: pytest.TempPathFactory):
    """No network (any connect fails loudly), one thread for tiny tensors, the tiny arch known."""
    path = tmp_path_factory.mktemp("clip") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def refuse(*args, **kwargs):
        raise AssertionError("a CLIP test tried to open a network connection")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_clip(f"clip:{TINY}", pretrained=False)


def _images(batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("clip:ViT-B-32@laion2b_s34b_b79k", ("ViT-B-32", "laion2b_s34b_b79k")),
        ("clip:RN50@openai", ("RN50", "openai")),
        ("clip:ViT-B/32", ("ViT-B-32", None)),
        (" CLIP:vit-b-32@OpenAI ", ("ViT-B-32", "openai")),
        ("clip:ViT-B-32@laion2b-s34b-b79k", ("ViT-B-32", "laion2b_s34b_b79k")),
    ],
)
def test_parse_clip_name(name: str, expected: tuple[str, str | None]) -> None:
    assert is_clip_name(name)
    assert parse_clip_name(name) == expected


def test_is_clip_name_rejects_timm_names() -> None:
    assert not is_clip_name("resnet18")
    assert not is_clip_name("vit_base_patch16_clip_224.openai")


def test_unknown_arch_suggests_nearest() -> None:
    with pytest.raises(
        UserError, match=r"unknown CLIP architecture 'ViT-B-23'.*did you mean 'ViT-B-32'"
    ):
        parse_clip_name("clip:ViT-B-23@openai")


def test_unknown_tag_lists_valid_tags() -> None:
    with pytest.raises(UserError, match=r"no weights tag 'laion' for CLIP 'RN50'") as info:
        parse_clip_name("clip:RN50@laion")
    assert "openai, yfcc15m, cc12m" in str(info.value)


@pytest.mark.parametrize("name", ["clip:", "clip:@openai", "clip:RN50@", "resnet18"])
def test_malformed_names(name: str) -> None:
    with pytest.raises(UserError, match="clip:ARCH"):
        parse_clip_name(name)


def test_openai_tags_force_quick_gelu(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenAI weights need QuickGELU; checked on the arguments, without building the big model."""
    seen: dict = {}
    monkeypatch.setattr(open_clip, "create_model", lambda arch, **kw: seen.update(kw, arch=arch))
    _create_model("ViT-B-32", "openai", pretrained=False)
    assert seen["force_quick_gelu"] is True and seen["pretrained"] is None
    _create_model("ViT-B-32", "laion2b_s34b_b79k", pretrained=False)
    assert seen["force_quick_gelu"] is False
    assert seen["pretrained_image"] is False and seen["pretrained_text"] is False


# --- building offline ----------------------------------------------------------------------------


def test_tiny_model_builds_offline(tiny) -> None:
    model, tokenizer, info = tiny
    assert isinstance(model, open_clip.CLIP)
    assert isinstance(tokenizer, open_clip.SimpleTokenizer)  # BPE vocab ships with the package
    assert (info.arch, info.tag, info.pretrained) == (TINY, None, False)
    assert info.image_size == 32 and info.embed_dim == 32
    assert info.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert info.std == pytest.approx(open_clip.OPENAI_DATASET_STD)


def test_pretrained_without_published_weights_is_a_user_error() -> None:
    with pytest.raises(UserError, match="has no published weights"):
        create_clip(f"clip:{TINY}", pretrained=True)


# --- image encoder -------------------------------------------------------------------------------


def test_image_encoder_gives_unit_embeddings(tiny) -> None:
    model, _, info = tiny
    encoder = CLIPImageEncoder(model, info).eval()
    with torch.no_grad():
        out = encoder(_images())
        assert torch.equal(encoder.forward_features(_images()), out)
        expected = model.encode_image(_images(), normalize=True)
    assert encoder.num_features == 32 and out.shape == (4, 32)
    assert torch.allclose(out.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(out, expected, atol=1e-6)


def test_image_encoder_normalisation_reads_through_data_config(tiny) -> None:
    model, _, info = tiny
    encoder = CLIPImageEncoder(model)  # info read off the model when not given
    assert encoder.num_features == 32
    mean, std = data_config(encoder)
    assert mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert std == pytest.approx(open_clip.OPENAI_DATASET_STD)
    cfg = timm.data.resolve_model_data_config(encoder)
    assert cfg["input_size"] == (3, 32, 32) and cfg["crop_pct"] == 1.0


# --- zero-shot -----------------------------------------------------------------------------------


def _manual_class_embeddings(model, tokenizer, names, templates) -> torch.Tensor:
    rows = []
    for name in names:
        per_template = [
            F.normalize(model.encode_text(tokenizer([t.format(name)])), dim=-1)[0]
            for t in templates
        ]
        rows.append(F.normalize(torch.stack(per_template).mean(dim=0), dim=-1))
    return torch.stack(rows)


def test_zero_shot_logits_match_manual_computation(tiny) -> None:
    model, tokenizer, info = tiny
    model.eval()
    classifier = ZeroShotClassifier(model, tokenizer, CLASSES, info=info).eval()
    readable = ["scratch mark", "fine crack", "dent"]
    with torch.no_grad():
        text = _manual_class_embeddings(model, tokenizer, readable, DEFAULT_TEMPLATES)
        image = F.normalize(model.encode_image(_images()), dim=-1)
        expected = model.logit_scale.exp() * image @ text.T
        logits = classifier(_images())
    assert logits.shape == (4, len(CLASSES))
    assert torch.allclose(classifier.class_embeddings, text, atol=1e-5)
    assert torch.allclose(logits, expected, atol=1e-4)
    assert torch.equal(logits.argmax(dim=1), expected.argmax(dim=1))


def test_templates_change_class_embeddings(tiny) -> None:
    model, tokenizer, info = tiny
    default = ZeroShotClassifier(model, tokenizer, CLASSES, info=info)
    single = ZeroShotClassifier(model, tokenizer, CLASSES, ["a photo of a {}."], info=info)
    assert not torch.allclose(default.class_embeddings, single.class_embeddings)
    with torch.no_grad():
        plain = model.encode_text(tokenizer(["a photo of a scratch mark."]), normalize=True)[0]
    assert torch.allclose(single.class_embeddings[0], plain, atol=1e-5)


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        ("scratch_mark", "scratch mark"),
        ("fine-crack", "fine crack"),
        ("MissingHole", "Missing Hole"),
        ("  rolled-in__scale ", "rolled in scale"),
        ("dent", "dent"),
    ],
)
def test_readable_class_names(raw: str, readable: str) -> None:
    assert readable_class_name(raw) == readable


@pytest.mark.parametrize(
    ("classes", "templates", "message"),
    [
        ([], None, "at least one class"),
        (["dent"], ["a photo"], r"must contain \{\}"),
        (["__"], None, "no words"),
    ],
)
def test_bad_prompts_are_user_errors(tiny, classes, templates, message) -> None:
    model, tokenizer, info = tiny
    with pytest.raises(UserError, match=message):
        ZeroShotClassifier(model, tokenizer, classes, templates, info=info)


def test_build_zero_shot_end_to_end() -> None:
    classifier, info = build_zero_shot(
        f"clip:{TINY}", CLASSES, pretrained=False, templates=["a photo of a {}."]
    )
    assert classifier.class_names == CLASSES and info.embed_dim == 32
    assert not hasattr(classifier, "transformer")  # text tower dropped after embedding the prompts
    assert set(classifier.state_dict()) >= {"class_embeddings", "logit_scale"}
    mean, _ = data_config(backbone_of(classifier))
    assert mean == pytest.approx(info.mean)
    with torch.no_grad():
        assert classifier.eval()(_images(2)).shape == (2, len(CLASSES))
