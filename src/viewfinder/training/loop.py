"""The training loop, readable top to bottom: fit -> train_one_epoch -> evaluate.

Hugging Face Accelerate places the model and batches on the device and wraps them for multi-GPU /
multi-node runs (``accelerate launch``). Mixed precision, gradient accumulation, clipping and the
schedule are written out here rather than hidden, so the recipe is visible:

- autocast in the chosen precision (``training/precision.py``), fp16 with a gradient scaler;
- gradient accumulation over ``grad_accum_steps`` micro-batches (no DDP sync in between);
- one scheduler step per optimizer step;
- every random draw is seeded from (seed, epoch, batch), so a run resumed from any checkpoint
  continues exactly as the uninterrupted run would have (up to non-deterministic kernels).

The loop knows nothing task-specific: it calls the task's ``step`` and ``metrics``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from viewfinder.config import RunConfig
from viewfinder.data.dataset import sample_seed
from viewfinder.errors import UserError
from viewfinder.models.classifier import count_parameters
from viewfinder.tasks.base import Task
from viewfinder.training import checkpoint as ckpt
from viewfinder.training.callbacks import Callback
from viewfinder.training.optim import build_optimizer, build_scheduler
from viewfinder.training.precision import Numerics, autocast, prepare_batch, select_numerics
from viewfinder.training.trackers import epoch_values, flat_config, make_trackers


def resolve_workers(setting: int | str) -> int:
    """``auto``: no worker processes on <= 2 cores (they would fight the model for the CPU)."""
    if setting != "auto":
        return int(setting)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if (cpus or 1) <= 2 else min(8, (cpus or 1) - 1)


def rss_mb() -> float:
    """Resident memory of this process and its loader workers, in MiB."""
    import psutil

    process = psutil.Process()
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total / 2**20


def eval_batch_size(cfg: RunConfig) -> int:
    """``train.eval_batch_size``; auto: the training batch on CPU, twice it on CUDA."""
    setting = cfg.train.eval_batch_size
    if setting != "auto":
        return int(setting)
    return cfg.train.batch_size * (2 if torch.cuda.is_available() else 1)


def make_loader(dataset: Any, task: Task, cfg: RunConfig, *, train: bool) -> DataLoader:
    batch_size = cfg.train.batch_size if train else eval_batch_size(cfg)
    workers = resolve_workers(cfg.data.num_workers)
    if not getattr(dataset, "needs_workers", True):
        workers = 0  # cached uint8 + batched augmentation: workers would only add copies
    sampler = task.train_sampler(dataset) if train else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train and len(dataset) >= batch_size,  # no 1-image batches for BatchNorm
        collate_fn=task.collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def make_accelerator(seed: int, trackers: Sequence[Any] = ()) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    loader_cfg = DataLoaderConfiguration(
        use_seedable_sampler=True, data_seed=seed, even_batches=False
    )
    return Accelerator(dataloader_config=loader_cfg, log_with=list(trackers) or None)


@torch.no_grad()
def evaluate(model, loader, task: Task, accelerator, numerics: Numerics) -> tuple[float, Any]:
    """Mean loss and the filled metric accumulator over ``loader`` (all processes)."""
    model.eval()
    metrics = task.metrics().to(accelerator.device)
    loss_sum = torch.zeros((), device=accelerator.device)
    count = torch.zeros((), device=accelerator.device)
    for batch in loader:
        if batch is None:
            continue
        batch = prepare_batch(task.transform_batch(batch, train=False), numerics.channels_last)
        with autocast(accelerator.device, numerics):
            out = task.step(model, batch)
        n = len(batch["index"])  # outputs may be a dict (multitask): count the batch's images
        loss_sum += out["loss"].detach().float() * n
        count += n
        metrics.update(out["outputs"], batch)
    loss_sum, count = accelerator.reduce(loss_sum), accelerator.reduce(count)
    return float(loss_sum / count.clamp(min=1)), metrics


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (job pre-emption, ``kill``) like Ctrl-C so a checkpoint is saved."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. some notebook kernels): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Trainer:
    """State of one fit: the prepared objects and the loop position."""

    def __init__(self, task: Task, cfg: RunConfig, run_dir: Path, callbacks: Sequence[Callback]):
        self.task, self.cfg, self.run_dir = task, cfg, Path(run_dir)
        self.callbacks = callbacks
        self.progress: dict[str, Any] = {
            "epoch": 0, "batch": 0, "global_step": 0, "best": None, "best_epoch": None,
            "bad_epochs": 0, "skipped_images": 0, "epoch_loss_sum": 0.0, "epoch_steps": 0,
        }  # fmt: skip
        self.status = "running"
        self.peak_rss_mb = 0.0

    # --- setup ----------------------------------------------------------------------------------
    def setup(self, resume: bool) -> None:
        from accelerate import PartialState
        from accelerate.utils import set_seed

        cfg, task = self.cfg, self.task
        state = PartialState()
        set_seed(cfg.train.seed, deterministic=cfg.train.deterministic)
        self.facts: dict[str, Any] = {}
        if resume or not state.is_main_process:
            if not resume:
                state.wait_for_everyone()  # the main process writes the split first
            task.load()
        else:
            self.facts = task.setup()
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml())
            if state.num_processes > 1:
                state.wait_for_everyone()
        monitor = cfg.train.monitor
        if monitor != "loss" and monitor not in task.metric_names:
            raise UserError(
                f"train.monitor={monitor!r} is not a metric of {task.name}; "
                f"choose from: loss, {', '.join(task.metric_names)}"
            )
        model, self.weights_note = task.build_model()
        self.parameters = count_parameters(model)
        self.numerics = self._numerics(model, state)
        if self.numerics.channels_last:
            model = model.to(memory_format=torch.channels_last)
        trackers = make_trackers(cfg, self.run_dir)
        self.accelerator = acc = make_accelerator(cfg.train.seed, trackers)
        if trackers:
            acc.init_trackers(f"viewfinder-{task.name}", config=flat_config(cfg))
        model = task.training_model(model, self.numerics, acc.device)
        if cfg.train.compile:
            model.compile()  # in place: state_dict keys and checkpoints stay unchanged
        self.train_set = task.dataset("train", train=True)
        val_set = task.dataset("val", train=False)
        train_loader = make_loader(self.train_set, task, cfg, train=True)
        val_loader = make_loader(val_set, task, cfg, train=False)
        optimizer = build_optimizer(model, cfg.train)
        self.model, self.optimizer, self.train_loader, self.val_loader = acc.prepare(
            model, optimizer, train_loader, val_loader
        )
        self.steps_per_epoch = len(self.train_loader)
        if cfg.train.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.train.max_steps_per_epoch)
        accum = cfg.train.grad_accum_steps
        self.scheduler = build_scheduler(
            self.optimizer, cfg.train, math.ceil(self.steps_per_epoch / accum)
        )
        self.scaler = torch.amp.GradScaler(
            acc.device.type, enabled=self.numerics.precision == "fp16"
        )
        if resume:
            ckpt.load_weights_file(acc.unwrap_model(self.model), self.run_dir / "last.safetensors")
            self.progress = ckpt.load_train_state(
                self.run_dir / "last.state.safetensors", self.optimizer, self.scheduler
            )
        self.val_images, self.val_set = len(val_set), val_set

    def _numerics(self, model: torch.nn.Module, state: Any) -> Numerics:
        """Precision and memory format (probed on CPU); the main process decides for all."""
        cuda = state.device.type == "cuda"
        if state.num_processes == 1:
            return select_numerics(model, self.task, self.cfg, cuda=cuda)
        from accelerate.utils import broadcast_object_list

        main = state.is_main_process  # one probe: the others would time a shared CPU
        holder = [select_numerics(model, self.task, self.cfg, cuda=cuda) if main else None]
        broadcast_object_list(holder)
        return holder[0]

    def info(self) -> dict[str, Any]:
        acc, skipped = self.accelerator, self.facts.get("skipped_images", 0)
        return {
            "name": self.run_dir.name, "model": self.cfg.model.name,
            "parameters": self.parameters, "weights": self.weights_note,
            "precision": self.numerics.precision, "channels_last": self.numerics.channels_last,
            "numerics_reason": self.numerics.reason, "train_images": len(self.train_set),
            "val_images": self.val_images, "processes": acc.num_processes,
            "device": acc.device.type, "skipped_images": skipped,
            "images_found": skipped + sum(self.facts.get("split_sizes", {}).values()),
            "skipped_list": str(self.run_dir / "skipped_images.csv"),
            "skipped_rows": self.facts.get("skipped_rows", 0),
            "skipped_rows_list": str(self.run_dir / "skipped_rows.csv"),
            "data": {k: vars(v) for k, v in self.task.data_reports.items()},
        }  # fmt: skip

    # --- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, name: str = "last") -> None:
        if not self.accelerator.is_main_process:
            return
        model = self.accelerator.unwrap_model(self.model)
        ckpt.save_weights(model, self.run_dir / f"{name}.safetensors", {"progress": self.progress})
        if name == "last":
            ckpt.save_train_state(
                self.run_dir / "last.state.safetensors",
                self.optimizer,
                self.scheduler,
                self.progress,
            )

    def _emit(self, hook: str, *args: Any) -> None:
        if self.accelerator.is_main_process:
            for callback in self.callbacks:
                getattr(callback, hook)(*args)

    # --- the loop -------------------------------------------------------------------------------
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        acc, cfg, model = self.accelerator, self.cfg, self.model
        accum = cfg.train.grad_accum_steps
        first = self.progress["batch"]
        self.train_set.epoch = epoch  # shared memory: persistent workers see it
        self.train_loader.set_epoch(epoch)
        loader = acc.skip_first_batches(self.train_loader, first) if first else self.train_loader
        model.train()
        model.zero_grad(set_to_none=True)
        self._emit("on_epoch_start", epoch, self.steps_per_epoch - first)
        start, seen = time.perf_counter(), 0
        # a resumed epoch continues the running train loss of the interrupted one
        loss_sum, steps = self.progress["epoch_loss_sum"], self.progress["epoch_steps"]
        for index, batch in enumerate(loader, start=first):
            if index >= self.steps_per_epoch:
                break
            if batch is None:
                continue
            torch.manual_seed(sample_seed(cfg.train.seed, epoch, index) + acc.process_index)
            batch = self.task.transform_batch(batch, train=True)
            batch = prepare_batch(batch, self.numerics.channels_last)
            sync = (index + 1) % accum == 0 or index + 1 == self.steps_per_epoch
            with contextlib.nullcontext() if sync else acc.no_sync(model):
                with autocast(acc.device, self.numerics):
                    out = self.task.step(model, batch)
                acc.backward(self.scaler.scale(out["loss"] / accum))
            loss_value = float(out["loss"].detach())
            loss_sum, steps = loss_sum + loss_value, steps + 1
            if sync:
                if cfg.train.clip_grad_norm:
                    self.scaler.unscale_(self.optimizer)
                    acc.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.progress.update(
                    batch=index + 1,
                    global_step=self.progress["global_step"] + 1,
                    epoch_loss_sum=loss_sum,
                    epoch_steps=steps,
                )
                every = cfg.train.checkpoint_every_steps
                if every and self.progress["global_step"] % every == 0:
                    self.save_checkpoint()
            seen += len(batch["index"]) * acc.num_processes
            self._count_skipped(int(batch.get("skipped", 0)))
            if index % 20 == 0:
                self.check_memory()
            elapsed = time.perf_counter() - start
            self._emit("on_step_end", {
                "epoch": epoch, "batch": index, "global_step": self.progress["global_step"],
                "loss": loss_value, "images_per_second": seen / max(elapsed, 1e-9),
            })  # fmt: skip
        elapsed = time.perf_counter() - start
        return {
            "train_loss": loss_sum / max(steps, 1),
            "epoch_time": elapsed,
            "images_per_second": seen / max(elapsed, 1e-9),
        }

    def _count_skipped(self, count: int) -> None:
        """Files that passed the up-front scan but failed to decode: every epoch meets the same
        ones, so the run's count is the largest of one epoch, not their sum."""
        if count:
            p = self.progress
            p["epoch_skipped"] = p.get("epoch_skipped", 0) + count
            p["skipped_images"] = max(p["skipped_images"], p["epoch_skipped"])

    def check_memory(self) -> None:
        """Track peak RSS; past ``train.max_rss_gb`` stop with a clear line (after a checkpoint)."""
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb())
        budget = self.cfg.train.max_rss_gb
        if budget and self.peak_rss_mb > budget * 1024:
            raise UserError(
                f"memory use {self.peak_rss_mb / 1024:.1f} GB passed train.max_rss_gb={budget}; "
                "lower batch_size or num_workers, or raise the budget (resume with --resume)"
            )

    def end_epoch(self, epoch: int, train_stats: dict[str, float], *, final: bool = False) -> bool:
        """Validate (every ``eval_every`` epochs, and a ``final`` one), log, checkpoint; True when
        early stopping says stop."""
        record: dict[str, Any] = {"epoch": epoch + 1, **train_stats}
        current = self.validate(record) if final or self.validates(epoch) else None
        record["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        self.check_memory()
        record["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        self.progress.update(
            epoch=epoch + 1, batch=0, epoch_loss_sum=0.0, epoch_steps=0, epoch_skipped=0
        )
        if current is not None:
            self.track_best(current, epoch)
        self.save_checkpoint("last")
        if self.accelerator.is_main_process:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.accelerator.trackers:  # log_with= (training/trackers.py)
            self.accelerator.log(epoch_values(record), step=epoch + 1)
        self._emit("on_epoch_end", record)
        patience = self.cfg.train.early_stopping_patience
        return bool(current is not None and patience and self.progress["bad_epochs"] >= patience)

    def validates(self, epoch: int) -> bool:
        """``train.eval_every``: every N-th epoch is validated, and the last one always."""
        every, last = self.cfg.train.eval_every, self.cfg.train.epochs
        return (epoch + 1) % every == 0 or epoch + 1 == last

    def validate(self, record: dict[str, Any]) -> float:
        """Score the validation split into ``record`` (``val_*``); returns the monitored value."""
        start = time.perf_counter()
        val_loss, metrics = evaluate(
            self.model, self.val_loader, self.task, self.accelerator, self.numerics
        )
        values = {"loss": val_loss, **metrics.compute()}
        record.update({f"val_{k}": v for k, v in values.items()})
        record["eval_time"] = time.perf_counter() - start
        return values[self.cfg.train.monitor]

    def track_best(self, current: float, epoch: int) -> None:
        """Save ``best`` weights when the monitored value improved; count bad epochs otherwise."""
        best = self.progress["best"]
        better = max if self.cfg.train.monitor_mode == "max" else min
        if best is None or (current != best and better(current, best) == current):
            self.progress.update(best=current, best_epoch=epoch + 1, bad_epochs=0)
            self.save_checkpoint("best")
        else:
            self.progress["bad_epochs"] += 1

    def closed_form(self, epoch: int) -> bool:
        """The task's fit without gradient steps (``Task.fit_closed_form``), when it has one: the
        whole training, validated and saved as one epoch."""
        model = self.accelerator.unwrap_model(self.model)
        stats = self.task.fit_closed_form(model, self.train_set, self.val_set)
        if stats is None:
            return False
        self.end_epoch(epoch, stats, final=True)
        return True

    def fit(self) -> str:
        """Run the remaining epochs; returns the final status."""
        self._emit("on_train_start", self.info())
        if self.accelerator.is_main_process:
            _trim_metrics(self.run_dir / "metrics.jsonl", self.progress["epoch"])
        with sigterm_as_interrupt():
            try:
                for epoch in range(self.progress["epoch"], self.cfg.train.epochs):
                    if self.closed_form(epoch):
                        self.status = "completed"
                        break
                    stats = self.train_one_epoch(epoch)
                    if self.end_epoch(epoch, stats):
                        self.status = "early_stopped"
                        break
                else:
                    self.status = "completed"
            except KeyboardInterrupt:
                self.status = "interrupted"
                self.save_checkpoint("last")
            except BaseException:
                self.status = "failed"
                self.save_checkpoint("last")
                raise
            finally:
                if self.accelerator.trackers:
                    self.accelerator.end_training()
        return self.status


def _trim_metrics(path: Path, completed_epochs: int) -> None:
    """On resume, drop metric lines of epochs that will be run again."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["epoch"] <= completed_epochs]
    path.write_text("".join(ln + "\n" for ln in kept))
