"""Baselines for viewfinder's speed benchmarks: what a user would otherwise write by hand.

Each function measures one thing and returns a dict (nothing is printed), so that a benchmark
can put viewfinder's numbers side by side with:

- a plain PyTorch loop (torchvision ImageFolder + classic PIL transforms, fp32, NCHW, AdamW);
- timm's recommended CPU training settings (train.py ``--amp --amp-dtype bfloat16
  --channels-last``: bf16 autocast, channels_last, timm's own dataset, loader and transforms);
- compute alone (random tensors), to separate compute from data loading;
- the machine's measured matmul peak and a model's training FLOPs per image, to express any
  images/s as a fraction of what the CPU can do.

Timed throughput always includes data loading (the time spent waiting for the next batch is
reported separately as ``data_seconds``) and starts after ``warmup_steps`` untimed steps.

Usage: python benchmarks/baselines.py [PHOTOS_DIR]   (a quick smoke of every function)
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so every baseline run is repeatable."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def imagefolder_loader(
    root: str | Path, size: int, batch_size: int, workers: int, *, train: bool = True, seed: int = 0
) -> Any:
    """torchvision ImageFolder + the classic PIL transforms, as in the torchvision tutorials."""
    import torch
    from torchvision import datasets, transforms

    if train:
        ops = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    else:
        ops = [transforms.Resize((size, size))]
    ops += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    dataset = datasets.ImageFolder(str(root), transform=transforms.Compose(ops))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def time_loader(loader: Iterable, epochs: int = 2) -> list[dict]:
    """Iterate full epochs of ``loader``; images/s per epoch (the first includes worker start)."""
    results = []
    for epoch in range(epochs):
        images = 0
        start = time.perf_counter()
        for batch in loader:
            images += int(batch[0].shape[0])
        seconds = time.perf_counter() - start
        results.append(
            {
                "epoch": epoch,
                "images": images,
                "seconds": seconds,
                "images_per_second": images / seconds if seconds > 0 else float("nan"),
            }
        )
    return results


def _forever(loader: Iterable) -> Iterator:
    """Restart the loader at each epoch end, as a multi-epoch training run does."""
    while True:
        yield from loader


def _timed_steps(
    batches: Iterator, step: Callable[[Any, Any], float], *, steps: int, warmup_steps: int
) -> dict:
    """Run ``warmup_steps`` untimed then ``steps`` timed steps; time includes batch fetching.

    ``images_per_second`` is the honest mean over the whole window; the per-step times and the
    median-step rate are kept too, since a shared CPU makes single slow steps common.
    """
    import statistics

    for _ in range(warmup_steps):
        images, targets = next(batches)
        step(images, targets)
    n_images, data_seconds, loss = 0, 0.0, float("nan")
    step_seconds: list[float] = []
    start = time.perf_counter()
    for _ in range(steps):
        fetch = time.perf_counter()
        images, targets = next(batches)
        data_seconds += time.perf_counter() - fetch
        loss = step(images, targets)
        n_images += int(images.shape[0])
        step_seconds.append(time.perf_counter() - fetch)
    seconds = time.perf_counter() - start
    return {
        "steps": steps,
        "images": n_images,
        "seconds": seconds,
        "data_seconds": data_seconds,
        "images_per_second": n_images / seconds,
        "median_step_images_per_second": n_images / steps / statistics.median(step_seconds),
        "step_seconds": step_seconds,
        "final_loss": loss,
    }


def _make_step(
    model: Any,
    optimizer: Any,
    loss_fn: Callable,
    *,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    channels_last: bool = False,
) -> Callable[[Any, Any], float]:
    """The usual forward / loss / backward / optimizer step, as a closure over the model."""
    import torch

    def step(images: Any, targets: Any) -> float:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            loss = loss_fn(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def _run_info(model_name: str, size: int, batch_size: int, workers: int | None) -> dict:
    import torch

    return {
        "model": model_name,
        "size": size,
        "batch_size": batch_size,
        "workers": workers,
        "threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg()[0],  # well above 0: other work shares the CPU
    }


def plain_fp32_train(
    model_name: str,
    root: str | Path,
    *,
    size: int,
    batch_size: int,
    steps: int,
    workers: int,
    warmup_steps: int = 2,
    seed: int = 0,
) -> dict:
    """The plain PyTorch loop a user writes: ImageFolder, fp32, NCHW, AdamW; images/s."""
    import timm
    import torch

    seed_everything(seed)
    loader = imagefolder_loader(root, size, batch_size, workers, train=True, seed=seed)
    model = timm.create_model(model_name, pretrained=False, num_classes=len(loader.dataset.classes))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    step = _make_step(model, optimizer, torch.nn.functional.cross_entropy)
    info = _run_info(model_name, size, batch_size, workers)
    timing = _timed_steps(_forever(loader), step, steps=steps, warmup_steps=warmup_steps)
    return {"baseline": "plain_fp32", **info, "precision": "fp32", "channels_last": False, **timing}


def timm_loader(
    root: str | Path,
    model: Any,
    *,
    size: int,
    batch_size: int,
    workers: int,
    seed: int = 0,
    color_jitter: float = 0.4,
) -> Any:
    """timm's own folder dataset, train transforms and loader, with train.py's defaults.

    Defaults follow timm's train.py: RandomResizedCrop with random bilinear/bicubic
    interpolation, horizontal flip, colour jitter 0.4; the CUDA prefetcher is off (CPU).
    """
    import torch
    from timm.data import create_dataset, create_loader, resolve_data_config

    data_config = resolve_data_config(model=model)
    dataset = create_dataset("", root=str(root), split="train", is_training=True, seed=seed)
    return create_loader(
        dataset,
        input_size=(3, size, size),
        batch_size=batch_size,
        is_training=True,
        use_prefetcher=False,
        interpolation="random",
        color_jitter=color_jitter,
        mean=data_config["mean"],
        std=data_config["std"],
        num_workers=workers,
        device=torch.device("cpu"),
        persistent_workers=workers > 0,
    )


def timm_amp_train(
    model_name: str,
    root: str | Path,
    *,
    size: int,
    batch_size: int,
    steps: int,
    workers: int,
    warmup_steps: int = 2,
    seed: int = 0,
) -> dict:
    """timm's recommended CPU recipe (``--amp --amp-dtype bfloat16 --channels-last``); images/s.

    bf16 autocast without a loss scaler (train.py only scales float16), channels_last model and
    inputs, timm's loader and transforms, label smoothing 0.1 (train.py's default). The optimizer
    is timm's AdamW (no weight decay on norms and biases) so the comparison with
    :func:`plain_fp32_train` is not an optimizer comparison.
    """
    from functools import partial

    import timm
    import torch
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2

    seed_everything(seed)
    n_classes = sum(1 for p in Path(root).iterdir() if p.is_dir())
    model = timm.create_model(model_name, pretrained=False, num_classes=n_classes)
    model = model.to(memory_format=torch.channels_last)
    model.train()
    loader = timm_loader(root, model, size=size, batch_size=batch_size, workers=workers, seed=seed)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
    autocast = partial(torch.autocast, device_type="cpu", dtype=torch.bfloat16)
    loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1)
    step = _make_step(model, optimizer, loss_fn, autocast=autocast, channels_last=True)
    info = _run_info(model_name, size, batch_size, workers)
    timing = _timed_steps(_forever(loader), step, steps=steps, warmup_steps=warmup_steps)
    return {"baseline": "timm_amp", **info, "precision": "bf16", "channels_last": True, **timing}


def compute_only_train(
    model_name: str,
    *,
    size: int,
    batch_size: int,
    steps: int,
    precision: str = "fp32",
    channels_last: bool = False,
    warmup_steps: int = 2,
    num_classes: int = 8,
    seed: int = 0,
) -> dict:
    """Training images/s on one fixed random batch: the ceiling with free data loading."""
    from functools import partial

    import timm
    import torch

    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
    seed_everything(seed)
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    autocast = contextlib.nullcontext
    if precision == "bf16":
        autocast = partial(torch.autocast, device_type="cpu", dtype=torch.bfloat16)
    step = _make_step(
        model,
        optimizer,
        torch.nn.functional.cross_entropy,
        autocast=autocast,
        channels_last=channels_last,
    )
    batch = (torch.randn(batch_size, 3, size, size), torch.randint(0, num_classes, (batch_size,)))
    batches = iter(lambda: batch, None)
    info = _run_info(model_name, size, batch_size, None)
    timing = _timed_steps(batches, step, steps=steps, warmup_steps=warmup_steps)
    precision_info = {"precision": precision, "channels_last": channels_last}
    return {"baseline": "compute_only", **info, **precision_info, **timing}


def matmul_peak(dtype: Any, sizes: Iterable[int] = (1024, 2048, 4096), repeats: int = 3) -> dict:
    """Best measured square-matmul FLOP/s (2*n^3 per product) over ``sizes``, all threads."""
    import torch

    seed_everything(0)
    load_before = os.getloadavg()[0]
    per_size: dict[int, float] = {}
    for n in sizes:
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        torch.mm(a, b)  # warm-up: thread pool, oneDNN/BLAS kernel selection, page faults
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        per_size[n] = 2 * n**3 / best
    best_size = max(per_size, key=per_size.__getitem__)
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "flops_per_second": per_size[best_size],
        "gflops": per_size[best_size] / 1e9,
        "best_size": best_size,
        "gflops_per_size": {n: f / 1e9 for n, f in per_size.items()},
    }


def train_flops_per_image(model_name: str, size: int, num_classes: int = 1000) -> float:
    """Forward + backward FLOPs per image (matmuls/convs, as FlopCounterMode counts them)."""
    import timm
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    seed_everything(0)
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes)
    model.train()
    images = torch.randn(2, 3, size, size)
    targets = torch.zeros(2, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(images), targets).backward()
    return counter.get_total_flops() / 2


def smoke(root: str | Path) -> dict:
    """Run every baseline briefly on a small photos folder; returns all results."""
    import torch

    model, size, batch = "resnet18", 64, 8
    common = {"size": size, "batch_size": batch, "steps": 2, "warmup_steps": 1}
    loader = imagefolder_loader(root, size, batch, 0, train=False)
    return {
        "time_loader": time_loader(loader, epochs=1),
        "plain_fp32_train": plain_fp32_train(model, root, workers=0, **common),
        "timm_amp_train": timm_amp_train(model, root, workers=0, **common),
        "compute_only_train": compute_only_train(
            model, precision="bf16", channels_last=True, **common
        ),
        "matmul_peak_fp32": matmul_peak(torch.float32, sizes=(512, 1024), repeats=2),
        "matmul_peak_bf16": matmul_peak(torch.bfloat16, sizes=(512, 1024), repeats=2),
        "train_flops_per_image": train_flops_per_image(model, size),
    }


def main(argv: list[str]) -> None:
    import json
    import tempfile

    from photos import make_photos

    if argv:
        root = make_photos(argv[0], per_class=20)
        print(json.dumps(smoke(root), indent=2, default=str))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = make_photos(Path(tmp) / "photos", per_class=20)
        print(json.dumps(smoke(root), indent=2, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(sys.argv[1:])
