"""The Task contract: everything task-specific lives behind these methods.

The trainer (``training/loop.py``), ``evaluate`` and ``predict`` know nothing about classification,
questions or captions: they call a task's methods. Adding a task is one file implementing
``Task`` plus a line in ``tasks/__init__.py``.

A task owns its run-folder state (e.g. the class list, the split), written by ``setup`` and read
back by ``load`` so that evaluate/predict from a finished run see exactly what training saw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from viewfinder.config import RunConfig
from viewfinder.data.dataset import CacheSettings


class TaskMetrics(Protocol):
    """Accumulates outputs over an epoch (synchronised across processes in distributed runs)."""

    def to(self, device: torch.device) -> TaskMetrics: ...

    def update(self, outputs: torch.Tensor, batch: dict[str, Any]) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Task(ABC):
    """One task: its records, model, batch step, metrics and submission format."""

    name: ClassVar[str]
    record_fields: ClassVar[tuple[str, ...]]
    metric_names: ClassVar[tuple[str, ...]]  # keys of metrics().compute(); "loss" is always there
    request_fields: ClassVar[tuple[str, ...]] = ()  # text an HTTP request adds to its image

    def __init__(self, cfg: RunConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.data_reports: dict[str, Any] = {}  # per split: what preparing its data cost

    def cache_settings(self) -> CacheSettings:
        """The image-cache settings of this run's config (``data.cache*`` keys)."""
        d = self.cfg.data
        root = Path(d.cache_dir).expanduser() if d.cache_dir else None
        # the first pass has the CPU to itself: all cores decode unless num_workers is set
        workers = None if d.num_workers == "auto" else int(d.num_workers)
        return CacheSettings(enabled=d.cache, root=root, max_gb=d.cache_max_gb, workers=workers)

    # --- data -----------------------------------------------------------------------------------
    @abstractmethod
    def setup(self) -> dict[str, Any]:
        """Read the data, make/save the split and task state; return facts for the summary."""

    @abstractmethod
    def load(self) -> None:
        """Restore the state ``setup`` saved (for resume, evaluate and predict)."""

    @abstractmethod
    def dataset(self, split: str, *, train: bool, data: str | None = None) -> Dataset:
        """The dataset of a split ("train", "val", "test"), or of other data for ``predict``."""

    @abstractmethod
    def collate(self, items: list[Any]) -> dict[str, Any] | None:
        """Batch a list of dataset items (``None`` when every item was a skipped bad file)."""

    def request_dataset(self, images: list[Any], fields: list[dict[str, str]]) -> Dataset:
        """The HTTP server's data: uploaded images, already decoded to ``stored_size()`` arrays,
        with each request's ``request_fields``, as the items ``dataset(train=False)`` yields (so
        ``collate``, ``step`` and ``postprocess`` are predict's own). Records have ``id``."""
        from viewfinder.errors import UserError

        raise UserError(f"task {self.name} cannot be served")

    def stored_size(self) -> int:
        """The side images are decoded to before the evaluation transform (cache and server)."""
        return self.cfg.image_size

    def train_sampler(self, dataset: Dataset) -> Any:
        """A sampler for the training loader (None = shuffle uniformly)."""
        return None

    def transform_batch(self, batch: dict[str, Any], *, train: bool) -> dict[str, Any]:
        """Batched augmentation/normalisation on the device, after collation (default: none)."""
        return batch

    # --- model ----------------------------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> tuple[nn.Module, str]:
        """The network, and a one-line note on where its weights came from."""

    def training_model(self, model: nn.Module, numerics: Any, device: torch.device) -> nn.Module:
        """The module the trainer optimises (default: ``model``; frozen mode: its head).

        Its ``state_dict`` must be ``model``'s, so checkpoints load into ``build_model()``'s model.
        """
        return model

    def fit_closed_form(
        self, model: nn.Module, train_set: Dataset, val_set: Dataset
    ) -> dict[str, float] | None:
        """Fit ``model`` (the ``training_model``) without gradient steps when the recipe has a
        closed form (``iqa``'s ``NAME+ridge`` on cached features). Returns the epoch record's
        ``train_loss``, ``epoch_time`` and ``images_per_second`` (the trainer validates and
        saves it as the run's one epoch), or None to train by gradient descent (default)."""
        return None

    def example_batch(self, batch_size: int) -> dict[str, Any]:
        """A synthetic batch ``step`` accepts, at the run's image size: the numerics probe times
        the run's own model on it (``training/precision.py``). Tasks with other inputs override."""
        size = self.cfg.image_size
        return {
            "image": torch.randn(batch_size, 3, size, size),
            "target": torch.zeros(batch_size, dtype=torch.int64),
        }

    @abstractmethod
    def step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Forward one batch: ``{"loss": scalar, "outputs": tensor}``. Under test-time
        augmentation the batch also carries ``tta_view``, the view's position (0: the image as it
        is), so a task can skip work that ``combine_views`` drops for the other views."""

    def combine_views(
        self, outputs: list[torch.Tensor], batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Test-time augmentation: one ``{"loss", "outputs"}`` from the outputs of every view."""
        from viewfinder.errors import UserError

        raise UserError(f"task {self.name} has no test-time augmentation; use tta=none")

    @abstractmethod
    def metrics(self) -> TaskMetrics:
        """A fresh metric accumulator; ``compute()`` keys are what ``train.monitor`` may name."""

    # --- results --------------------------------------------------------------------------------
    @abstractmethod
    def postprocess(
        self, outputs: torch.Tensor, batch: dict[str, Any], *, probabilities: bool = False
    ) -> list[dict[str, Any]]:
        """Submission rows for one batch (shared by ``predict`` and the HTTP server)."""

    @abstractmethod
    def report(self, metrics: TaskMetrics, out_dir: Path) -> dict[str, Any]:
        """Write the evaluation views (tables, plots) to ``out_dir``; return the summary numbers."""

    @abstractmethod
    def submission_columns(self, probabilities: bool = False) -> list[str]:
        """Header of the submission CSV ``predict`` writes."""
