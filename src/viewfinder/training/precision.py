"""Numerics per model and device: mixed precision and memory format, chosen by rule, overridable.

Measured on an AVX-512 BF16 CPU (docs/benchmarks.md): bf16 autocast trains ResNet-type nets ~2x
faster than fp32, while depthwise-convolution nets (EfficientNet, MobileNet) are faster in fp32;
channels_last helps convolution nets in both. On CUDA: bf16 where supported, else fp16 with a
gradient scaler (accelerate handles it), channels_last for convolution nets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from viewfinder.config import TrainConfig
from viewfinder.errors import UserError
from viewfinder.models.backbones import has_depthwise_conv


@dataclass(frozen=True)
class Numerics:
    precision: str  # "fp32", "bf16" or "fp16"
    channels_last: bool
    reason: str

    @property
    def accelerate_mixed_precision(self) -> str:
        return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[self.precision]


def cpu_supports_bf16() -> bool:
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def _is_convnet(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) for m in model.modules())


def choose_numerics(backbone: nn.Module, cfg: TrainConfig, *, cuda: bool) -> Numerics:
    """Pick precision and memory format for this backbone on this device."""
    depthwise = has_depthwise_conv(backbone)
    convnet = _is_convnet(backbone)
    if cfg.precision == "fp16" and not cuda:
        raise UserError("precision=fp16 needs a CUDA GPU; use precision=bf16 or fp32 on CPU")
    if cfg.precision != "auto":
        precision, reason = cfg.precision, "set by config"
    elif cuda:
        bf16 = torch.cuda.is_bf16_supported()
        precision, reason = ("bf16" if bf16 else "fp16"), "CUDA mixed precision"
    elif depthwise:
        precision, reason = "fp32", "depthwise convolutions are faster in fp32 on CPU"
    elif cpu_supports_bf16():
        precision, reason = "bf16", "CPU has native bf16"
    else:
        precision, reason = "fp32", "CPU without native bf16"
    if precision == "bf16" and not cuda and not cpu_supports_bf16() and cfg.precision == "bf16":
        reason += " (this CPU emulates bf16: slow)"
    channels_last = convnet if cfg.channels_last == "auto" else bool(cfg.channels_last)
    return Numerics(precision, channels_last, reason)
