"""CLIP models through open_clip: ``clip:ARCH`` or ``clip:ARCH@TAG`` (e.g. ``clip:RN50@openai``).

Two uses: the image tower as a viewfinder backbone (``CLIPImageEncoder``, for linear probes and
fine-tuning) and zero-shot classification from class names (``ZeroShotClassifier``). open_clip is
imported lazily so ``viewfinder --help`` stays instant and the package stays optional.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from viewfinder.errors import UserError, did_you_mean

PREFIX = "clip:"

# Prompt ensemble: generic photo wording (from Radford et al. 2021's ImageNet set) plus two
# inspection phrasings, so defect names such as "scratch" or "missing hole" read naturally.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a blurry photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "an inspection photo showing a {}.",
    "a close-up photo of a surface with a {}.",
)

# open_clip's resize_mode -> timm's crop_mode, so timm's eval transform matches open_clip's.
_CROP_MODES = {"shortest": "center", "squash": "squash", "longest": "border"}

Tokenizer = Callable[[list[str]], torch.Tensor]


@dataclass(frozen=True)
class CLIPInfo:
    """What the rest of viewfinder needs to feed a CLIP model: input size and normalisation."""

    arch: str
    tag: str | None  # weights tag; None = no tag named
    pretrained: bool  # False: random init (the tag, if any, only sets preprocessing)
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    embed_dim: int
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm-style config, so ``timm.data.resolve_model_data_config`` reads this model."""
        return {
            "input_size": self.input_size,
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
            "crop_pct": 1.0,  # open_clip resizes to the input size; it does not crop a margin
            "crop_mode": _CROP_MODES.get(self.resize_mode, "center"),
        }


def _open_clip() -> Any:
    """Import open_clip, or say in one line how to install it."""
    if importlib.util.find_spec("open_clip") is None:
        raise UserError("CLIP models need open_clip: pip install open_clip_torch")
    import open_clip

    return open_clip


def is_clip_name(name: str) -> bool:
    """True for ``clip:...`` names (checked without importing open_clip)."""
    return name.strip().lower().startswith(PREFIX)


def _resolve_arch(arch: str, models: list[str]) -> str:
    """Exact open_clip name, accepting ``ViT-B/32`` and any letter case when unambiguous."""
    arch = arch.replace("/", "-")
    if arch in models:
        return arch
    same = [m for m in models if m.lower() == arch.lower()]
    if len(same) == 1:
        return same[0]
    raise UserError(
        f"unknown CLIP architecture {arch!r}{did_you_mean(arch, models)}; "
        "see open_clip.list_models() for the names"
    )


def parse_clip_name(name: str) -> tuple[str, str | None]:
    """Split ``clip:ARCH@TAG`` into (open_clip architecture, weights tag or None), validated.

    Tags are normalised the way open_clip does (lower case, ``-`` -> ``_``).
    """
    if not is_clip_name(name):
        raise UserError(f"{name!r} is not a CLIP model name; write clip:ARCH or clip:ARCH@TAG")
    arch, at, tag = name.strip()[len(PREFIX) :].partition("@")
    if not arch or (at and not tag):
        raise UserError(
            f"model {name!r}: write clip:ARCH or clip:ARCH@TAG (e.g. clip:ViT-B-32@openai)"
        )
    open_clip = _open_clip()
    arch = _resolve_arch(arch, open_clip.list_models())
    if not at:
        return arch, None
    tag = tag.lower().replace("-", "_")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        valid = ", ".join(tags) if tags else "none (use pretrained=false)"
        raise UserError(f"no weights tag {tag!r} for CLIP {arch!r}; valid tags: {valid}")
    return arch, tag


def _weights_tag(arch: str, tag: str | None, pretrained: bool) -> str | None:
    """The tag to load: the named one, else the first published (openai's where it exists)."""
    if tag is not None or not pretrained:
        return tag
    tags = _open_clip().list_pretrained_tags_by_model(arch)
    if not tags:
        raise UserError(
            f"CLIP {arch!r} has no published weights; use pretrained=false or another arch"
        )
    return tags[0]


def _check_text_requirements(arch: str) -> None:
    """HF text towers and SigLIP/multilingual tokenizers need ``transformers``: say so up front
    rather than fail halfway through building (open_clip raises a bare RuntimeError)."""
    text_cfg = (_open_clip().get_model_config(arch) or {}).get("text_cfg", {})
    uses_hf = "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg
    if (uses_hf or "siglip" in arch.lower()) and importlib.util.find_spec("transformers") is None:
        raise UserError(
            f"CLIP {arch!r} needs the transformers package for its text side: "
            "pip install transformers (its tokenizer also comes from the model hub)"
        )


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _create_model(arch: str, tag: str | None, pretrained: bool) -> nn.Module:
    """open_clip.create_model with the tag's activation and preprocessing, downloading only if
    ``pretrained``. OpenAI's weights were trained with QuickGELU; plain configs use nn.GELU, so the
    flag is forced from the tag (open_clip only warns about the mismatch)."""
    open_clip = _open_clip()
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    kwargs = {
        "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
        "force_preprocess_cfg": tag_cfg or None,
        "pretrained_image": False,  # no ImageNet tower weights behind the user's back
        "pretrained_text": False,
    }
    try:
        return open_clip.create_model(arch, pretrained=tag if pretrained else None, **kwargs)
    except (RuntimeError, OSError) as err:
        if not pretrained and not isinstance(err, OSError):
            raise
        label = PREFIX + arch + (f"@{tag}" if tag else "")
        raise UserError(
            f"could not build {label} ({_first_line(err)}); check your connection "
            "(the weights or tokenizer come from the model hub) or use pretrained=false"
        ) from None


def _get_tokenizer(arch: str) -> Tokenizer:
    """The arch's tokenizer; SigLIP and multilingual archs fetch theirs from the model hub."""
    try:
        return _open_clip().get_tokenizer(arch)
    except (OSError, ImportError) as err:
        raise UserError(
            f"could not load the tokenizer of CLIP {arch!r} ({_first_line(err)}); "
            "it needs the model hub (and `transformers`); check your connection"
        ) from None


def _preprocess(model: nn.Module) -> dict[str, Any]:
    """The preprocessing open_clip attached to the model (size, mean, std, resize mode)."""
    cfg = dict(_open_clip().get_model_preprocess_cfg(model))
    size = cfg.get("size", 224)
    cfg["size"] = int(size if isinstance(size, int) else size[0])
    return cfg


def _embed_dim(visual: nn.Module, image_size: int) -> int:
    """Width of the image embedding: ``output_dim`` when the tower has it, else one probe."""
    dim = getattr(visual, "output_dim", None)
    if isinstance(dim, int):
        return dim
    was_training = visual.training
    visual.eval()
    with torch.no_grad():
        out = visual(torch.zeros(1, 3, image_size, image_size))
    visual.train(was_training)
    return int((out[0] if isinstance(out, tuple) else out).shape[-1])


def clip_info(model: nn.Module, arch: str, tag: str | None, pretrained: bool) -> CLIPInfo:
    """Read size, normalisation and embedding width off a built open_clip model."""
    cfg = _preprocess(model)
    return CLIPInfo(
        arch=arch,
        tag=tag,
        pretrained=pretrained,
        image_size=cfg["size"],
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        embed_dim=_embed_dim(model.visual, cfg["size"]),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        resize_mode=str(cfg.get("resize_mode", "shortest")),
    )


def create_clip(name: str, *, pretrained: bool) -> tuple[nn.Module, Tokenizer, CLIPInfo]:
    """Build ``clip:ARCH[@TAG]``: (open_clip model, tokenizer, info), on CPU in fp32.

    ``pretrained=False`` is random init and downloads nothing (tests, offline runs); a named tag
    then only sets the preprocessing. ``pretrained=True`` downloads the tag's published weights
    (the first listed tag when none is named) from the model hub on a user's machine.
    """
    arch, tag = parse_clip_name(name)
    tag = _weights_tag(arch, tag, pretrained)
    _check_text_requirements(arch)
    model = _create_model(arch, tag, pretrained)
    tokenizer = _get_tokenizer(arch)
    return model, tokenizer, clip_info(model, arch, tag, pretrained)


class CLIPImageEncoder(nn.Module):
    """CLIP's image tower as a viewfinder backbone: images -> (B, num_features) unit vectors.

    Embeddings are L2-normalised because CLIP was trained on cosine similarity: only their
    direction carries meaning, and linear probes on CLIP (Radford et al. 2021) use normalised
    features. There is no spatial grid, so ``forward_features`` returns the same vectors.
    ``pretrained_cfg`` is timm-style so ``timm.data.resolve_model_data_config`` (and viewfinder's
    ``data_config``) read the right mean, std and input size.
    """

    def __init__(self, clip_model: nn.Module, info: CLIPInfo | None = None) -> None:
        super().__init__()
        info = info or clip_info(clip_model, "custom", None, pretrained=False)
        self.visual = clip_model.visual
        self.num_features = info.embed_dim
        self.pretrained_cfg = info.pretrained_cfg

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        out = self.visual(images)
        if isinstance(out, tuple):  # CoCa's tower also returns its token embeddings
            out = out[0]
        return F.normalize(out, dim=-1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features  # no classifier of its own: heads sit on top of the embedding

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)


def create_clip_backbone(name: str, *, pretrained: bool) -> CLIPImageEncoder:
    """The image tower of ``clip:ARCH[@TAG]`` alone (the text tower is dropped)."""
    model, _, info = create_clip(name, pretrained=pretrained)
    return CLIPImageEncoder(model, info)


def readable_class_name(name: str) -> str:
    """Folder-style names to words for prompts: ``scratch_mark``, ``fine-crack``, ``MissingHole``
    -> ``scratch mark``, ``fine crack``, ``Missing Hole``. CLIP learned from captions, which
    write words apart; the tokenizer lower-cases, so letter case is left alone."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    return " ".join(re.sub(r"[_\-]+", " ", words).split())


def _check_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    if not class_names:
        raise UserError("zero-shot classification needs at least one class name")
    if not templates or any("{}" not in t for t in templates):
        raise UserError("every prompt template must contain {} where the class name goes")
    readable = [readable_class_name(c) for c in class_names]
    empty = [c for c, r in zip(class_names, readable, strict=True) if not r]
    if empty:
        raise UserError(f"class name {empty[0]!r} has no words to put in a prompt; rename it")
    return readable


def text_embeddings(
    clip_model: nn.Module, tokenizer: Tokenizer, names: Sequence[str], templates: Sequence[str]
) -> torch.Tensor:
    """(C, D) class embeddings by prompt ensembling (Radford et al. 2021): per class, the mean of
    its normalised template embeddings, normalised again."""
    device = next(clip_model.parameters()).device
    was_training = clip_model.training
    clip_model.eval()
    rows = []
    with torch.no_grad():
        for name in names:
            tokens = tokenizer([t.format(name) for t in templates]).to(device)
            mean = clip_model.encode_text(tokens, normalize=True).float().mean(dim=0)
            rows.append(F.normalize(mean, dim=-1))
    clip_model.train(was_training)
    return torch.stack(rows)


class ZeroShotClassifier(nn.Module):
    """Classify images by cosine similarity to embedded class-name prompts; no training needed.

    Class names are made readable (``scratch_mark`` -> ``scratch mark``) before they fill the
    templates. Class embeddings are computed once and kept as a buffer, so the text tower is
    dropped and saved checkpoints carry everything predict and serve need. ``backbone`` is the
    image encoder, so ``backbone_of`` and ``data_config`` work as for any viewfinder model.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        tokenizer: Tokenizer,
        class_names: Sequence[str],
        templates: Sequence[str] | None = None,
        info: CLIPInfo | None = None,
    ) -> None:
        super().__init__()
        templates = tuple(templates or DEFAULT_TEMPLATES)
        readable = _check_prompts(class_names, templates)
        self.class_names = list(class_names)
        self.templates = templates
        self.backbone = CLIPImageEncoder(clip_model, info)
        embeddings = text_embeddings(clip_model, tokenizer, readable, templates)
        self.register_buffer("class_embeddings", embeddings)
        self.register_buffer("logit_scale", clip_model.logit_scale.detach().clone())
        bias = getattr(clip_model, "logit_bias", None)  # SigLIP: keeps sigmoid scores calibrated
        self.register_buffer("logit_bias", None if bias is None else bias.detach().clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        image = self.backbone(images)
        logits = self.logit_scale.exp() * image @ self.class_embeddings.to(image.dtype).T
        if self.logit_bias is not None:
            logits = logits + self.logit_bias
        return logits


def build_zero_shot(
    name: str,
    class_names: Sequence[str],
    *,
    pretrained: bool,
    templates: Sequence[str] | None = None,
) -> tuple[ZeroShotClassifier, CLIPInfo]:
    """A zero-shot classifier for ``class_names`` from ``clip:ARCH[@TAG]``, and its info."""
    model, tokenizer, info = create_clip(name, pretrained=pretrained)
    return ZeroShotClassifier(model, tokenizer, class_names, templates, info), info
