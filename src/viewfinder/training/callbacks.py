"""Hooks the training loop calls: the progress display, and test/notebook hooks.

The loop calls every callback on the main process only. A callback may raise
``KeyboardInterrupt`` to stop a run (the loop then saves a resumable checkpoint).
"""

from __future__ import annotations

from typing import Any


class Callback:
    """Base class: override what you need."""

    def on_train_start(self, info: dict[str, Any]) -> None: ...

    def on_epoch_start(self, epoch: int, total_steps: int) -> None: ...

    def on_step_end(self, step: dict[str, Any]) -> None: ...

    def on_epoch_end(self, record: dict[str, Any]) -> None: ...

    def on_train_end(self, summary: dict[str, Any]) -> None: ...


class StopAfterSteps(Callback):
    """Interrupts the run after ``steps`` optimizer steps: simulates Ctrl-C in tests."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_end(self, step: dict[str, Any]) -> None:
        if step["global_step"] >= self.steps:
            raise KeyboardInterrupt


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


class RichProgress(Callback):
    """A rich progress bar per epoch (loss, img/s, ETA) and one line of metrics per epoch.

    rich renders in terminals and in Jupyter/Colab alike; with no terminal (CI, logs) only the
    per-epoch lines are printed.
    """

    def __init__(self, console: Any = None, monitor: str = "accuracy") -> None:
        from rich.console import Console

        self.console = console or Console()
        self.monitor = monitor
        self.progress: Any = None
        self.task_id: Any = None

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.console.print(
            f"[bold]{info['name']}[/]: {info['model']} ({info['parameters'] / 1e6:.2f} M params,"
            f" {info['weights']}), {info['precision']}"
            f"{' + channels_last' if info['channels_last'] else ''} ({info['numerics_reason']}),"
            f" {info['train_images']} train / {info['val_images']} val images,"
            f" {info['processes']} process(es) on {info['device']}"
        )
        from viewfinder.data.images import skipped_notice

        effect = "the run goes on without them"
        lines = []
        if info.get("skipped_images"):
            lines.append(skipped_notice(
                info["skipped_images"], info["images_found"], info["skipped_list"], effect=effect
            ))  # fmt: skip
        if rows := info.get("skipped_rows"):
            lines.append(skipped_notice(
                rows, None, info["skipped_rows_list"], effect=effect,
                what=f"data row{'s' * (rows != 1)} that could not be used",
            ))  # fmt: skip
        for line in lines:
            self.console.print(f"[yellow]{line}[/]", highlight=False)
        for split, report in info.get("data", {}).items():
            if report.get("folder"):
                self.console.print(
                    f"  {split}: {report['images']} images cached ({report['decoded']} decoded now,"
                    f" {report['seconds']:.1f} s) in {report['folder']}"
                    + (f"; features {report['features']}" if report.get("features") else "")
                )

    def on_epoch_start(self, epoch: int, total_steps: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn(f"epoch {epoch + 1}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  {task.fields[speed]} img/s"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=total_steps, loss="-", speed="-")

    def on_step_end(self, step: dict[str, Any]) -> None:
        self.progress.update(
            self.task_id,
            advance=1,
            loss=f"{step['loss']:.4f}",
            speed=f"{step['images_per_second']:.0f}",
        )

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.stop()
        shown = ["train_loss", "val_loss", f"val_{self.monitor}", "learning_rate"]
        parts = [f"{k}={_fmt(record[k])}" for k in shown if k in record]
        self.console.print(
            f"epoch {record['epoch']}: " + " ".join(parts) + f" ({record['epoch_time']:.1f} s,"
            f" {record['images_per_second']:.0f} img/s)"
        )

    def on_train_end(self, summary: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.stop()
