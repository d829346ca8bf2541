"""Numerics per model and device: mixed precision and memory format, measured or by rule.

On CPU, ``precision=auto`` times a few training steps of the run's own model, image size and
batch in fp32 and in bf16 (``select_numerics``; the probe) and keeps the faster; the figures are
cached per CPU model, torch version, thread count, model, image size, batch and mode in
``<cache>/numerics.json``, so a model is probed once per machine. Why measure: the best choice
differs by CPU and by net (docs/benchmarks.md): bf16 trains ResNets ~2x faster than fp32 on a CPU
with native bf16, EfficientNet and MobileNet (depthwise convolutions) are faster in fp32, and
ConvNeXt (depthwise convolutions, but most of its time in MLP matmuls) is faster in bf16 on AMX.

With ``precision_probe=false``, or for evaluate/predict with nothing cached, the rule decides
(``choose_numerics``): CUDA -> bf16 where supported, else fp16 with a gradient scaler; CPU without
native bf16 -> fp32; depthwise-convolution nets -> fp32 (wrong for ConvNeXt on AMX: the reason the
probe exists); others -> bf16. channels_last for convolution nets in every case.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from viewfinder.config import RunConfig, TrainConfig
from viewfinder.errors import UserError
from viewfinder.models.backbones import has_depthwise_conv

PROBE_WARMUP_STEPS = 2  # per candidate: the first steps build kernels and allocate
PROBE_ROUNDS = 3  # then one timed step per candidate per round, interleaved; median per candidate
PROBE_FILE = "numerics.json"
BF16_MARGIN = 1.05  # bf16 must be > 5 % faster than fp32 to be chosen


@dataclass(frozen=True)
class Numerics:
    precision: str  # "fp32", "bf16" or "fp16"
    channels_last: bool
    reason: str

    @property
    def accelerate_mixed_precision(self) -> str:
        return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[self.precision]


def autocast(device: torch.device, numerics: Numerics) -> contextlib.AbstractContextManager:
    dtype = torch.bfloat16 if numerics.precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=numerics.precision != "fp32")


def keep_cast_weights() -> contextlib.AbstractContextManager:
    """For inference (weights never change): keep autocast's low-precision copies of the weights
    from one batch to the next. Autocast drops them whenever its outermost context exits - after
    every batch - so each batch re-casts every weight: resnet18 at batch 1 took 15 ms instead of
    4.5 (docs/benchmarks.md). Inside this (disabled) outer context the per-batch ``autocast``
    still decides the precision; the casts are made once."""
    return torch.autocast("cpu", enabled=False)


def prepare_batch(batch: dict[str, Any], channels_last: bool) -> dict[str, Any]:
    if channels_last:
        batch = {
            k: v.contiguous(memory_format=torch.channels_last)
            if torch.is_tensor(v) and v.ndim == 4
            else v
            for k, v in batch.items()
        }
    return batch


def cpu_supports_bf16() -> bool:
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def _is_convnet(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) for m in model.modules())


def _cpu_rule(backbone: nn.Module) -> tuple[str, str]:
    if not cpu_supports_bf16():
        return "fp32", "CPU without native bf16"
    if has_depthwise_conv(backbone):
        return "fp32", "depthwise convolutions are faster in fp32 on CPU"
    return "bf16", "CPU has native bf16"


def choose_numerics(backbone: nn.Module, cfg: TrainConfig, *, cuda: bool) -> Numerics:
    """The rule: precision and memory format for this backbone on this device, unmeasured."""
    if cfg.precision == "fp16" and not cuda:
        raise UserError("precision=fp16 needs a CUDA GPU; use precision=bf16 or fp32 on CPU")
    if cfg.precision != "auto":
        precision, reason = cfg.precision, "set by config"
    elif cuda:
        bf16 = torch.cuda.is_bf16_supported()
        precision, reason = ("bf16" if bf16 else "fp16"), "CUDA mixed precision"
    else:
        precision, reason = _cpu_rule(backbone)
    if precision == "bf16" and not cuda and not cpu_supports_bf16() and cfg.precision == "bf16":
        reason += " (this CPU emulates bf16: slow)"
    convnet = _is_convnet(backbone)
    channels_last = convnet if cfg.channels_last == "auto" else bool(cfg.channels_last)
    return Numerics(precision, channels_last, reason)


# --- the probe ----------------------------------------------------------------------------------
def cpu_name() -> str:
    """The CPU model, as /proc/cpuinfo names it (machines differ: AMX, AVX-512 BF16, AVX2)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def cpu_busy() -> bool:
    """Whether other work kept the cores busy (1-minute load above the core count): timings
    taken then say more about the other work than about this model, so they are used once and
    not cached (the next run probes again)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return False
    return load > (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def probe_key(cfg: RunConfig, channels_last: bool, parameters: int | None = None) -> str:
    """What the measured ratio depends on: machine, library, threads, model, input and mode.

    ``parameters`` (the whole network's count) tells apart networks one model name builds for
    different tasks or heads (a classifier, a captioner with an LSTM or a transformer decoder)."""
    mode = "features" if cfg.model.freeze_backbone else "train"
    layout = "channels_last" if channels_last else "contiguous"
    size = f" | {parameters} params" if parameters is not None else ""
    return (
        f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"{cfg.model.name}{size} | {cfg.image_size} px | batch {cfg.train.batch_size} | {mode} | "
        f"{layout}"
    )


def read_probes(path: Path) -> dict[str, dict[str, float]]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def _write_probe(path: Path, key: str, figures: dict[str, float]) -> None:
    """Read-modify-replace: a concurrent writer can only lose an entry (probed again later)."""
    data = {**read_probes(path), key: figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _timed_step(model: nn.Module, task: Any, batch: dict[str, Any], numerics: Numerics) -> float:
    """Seconds of one forward (+ backward when the model trains) in ``numerics``."""
    start = time.perf_counter()
    with torch.set_grad_enabled(model.training), autocast(torch.device("cpu"), numerics):
        out = task.step(model, batch)
    if model.training:
        out["loss"].backward()
        model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure_numerics(
    model: nn.Module, task: Any, cfg: RunConfig, channels_last: bool, candidates: tuple[str, ...]
) -> dict[str, float]:
    """Images/s of each candidate precision on a copy of ``model`` (the run's own model, batch
    and image size; a synthetic batch). The model, its statistics and the RNG stay untouched."""
    probe = copy.deepcopy(model)
    if channels_last:
        probe = probe.to(memory_format=torch.channels_last)
    probe.train(not cfg.model.freeze_backbone)  # frozen runs only extract features
    size = cfg.train.batch_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        batch = prepare_batch(task.example_batch(size), channels_last)
        numerics = {p: Numerics(p, channels_last, "probe") for p in candidates}
        for n in numerics.values():
            for _ in range(PROBE_WARMUP_STEPS):
                _timed_step(probe, task, batch, n)
        times: dict[str, list[float]] = {p: [] for p in candidates}
        for _ in range(PROBE_ROUNDS):
            for p, n in numerics.items():
                times[p].append(_timed_step(probe, task, batch, n))
    return {p: round(size / statistics.median(t), 2) for p, t in times.items()}


def pick_precision(figures: dict[str, float]) -> str:
    """bf16 only when it is clearly faster: within ``BF16_MARGIN`` fp32 wins, as the same speed
    at full precision (and a near-tie is within the probe's timing noise)."""
    fp32, bf16 = figures.get("fp32", 0.0), figures.get("bf16", 0.0)
    return "bf16" if bf16 > fp32 * BF16_MARGIN else "fp32"


def select_numerics(
    model: nn.Module, task: Any, cfg: RunConfig, *, cuda: bool, measure: bool = True
) -> Numerics:
    """The numerics a run uses: the probe's choice on CPU (``measure=False``: only a cached
    probe, as evaluate/predict do), else the rule."""
    from viewfinder.models.classifier import backbone_of

    rule = choose_numerics(backbone_of(model), cfg.train, cuda=cuda)
    probing = cfg.train.precision == "auto" and cfg.train.precision_probe
    if cuda or not probing or not cpu_supports_bf16():
        return rule  # on CUDA bf16/fp16 always wins; without native bf16, emulated bf16 loses
    path = task.cache_settings().folder / PROBE_FILE
    key = probe_key(cfg, rule.channels_last, sum(p.numel() for p in model.parameters()))
    figures, source = read_probes(path).get(key), "cached"
    if figures is None:
        if not measure:
            return rule
        start = time.perf_counter()
        figures = measure_numerics(model, task, cfg, rule.channels_last, ("fp32", "bf16"))
        source = f"measured in {time.perf_counter() - start:.1f} s"
        if cpu_busy():
            source += ", not cached: the CPU was busy"
        else:
            _write_probe(path, key, figures)
    best = pick_precision(figures)
    shown = ", ".join(f"{p} {v:.1f}" for p, v in sorted(figures.items(), key=lambda kv: -kv[1]))
    return Numerics(best, rule.channels_last, f"probe {source}: {shown} img/s")
