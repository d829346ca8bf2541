"""``iqa+caption``: one shared backbone with a MOS head and a caption head, trained together on
the camera-quality challenge's CSV (``img_name,img_path,mos,comments``), scored with both of its
scores and writing its submission ``img_name,mos,comments``.

It composes the two tasks rather than branching anywhere: the data, MOS scaling, losses and
quality report are ``iqa``'s (``QualityTask``), the vocabulary, token batches, decoding, caption
metrics and caption report are ``caption``'s (``CaptionText``). The one loss is
``mos_weight * MOS loss + caption_weight * caption loss``. Images without comments add no caption
loss, images without a MOS no MOS loss. The alternative the study wished it had tried, separate
models, is ``predict IQA_RUN CAPTION_RUN`` (their columns joined by image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from viewfinder.metrics.captions import METRIC_NAMES as CAPTION_METRICS
from viewfinder.metrics.quality import METRIC_NAMES as QUALITY_METRICS
from viewfinder.metrics.quality import QualityMetrics
from viewfinder.tasks.caption import CaptionedImages, CaptionText
from viewfinder.tasks.iqa import QualityTask


class QualityCaptionMetrics:
    """Both accumulators; ``compute`` merges their numbers."""

    def __init__(self, caption: Any) -> None:
        self.quality, self.caption = QualityMetrics(), caption

    def to(self, device: torch.device) -> QualityCaptionMetrics:
        self.quality = self.quality.to(device)
        return self

    def update(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        self.quality.update(outputs["mos"], batch)
        self.caption.update(outputs["caption"], batch)

    def compute(self) -> dict[str, float | None]:
        return {**self.quality.compute(), **self.caption.compute()}


class QualityCaptionTask(CaptionedImages, QualityTask):
    name = "iqa+caption"
    record_fields = ("img_name", "path", "mos", "comments")
    metric_names = QUALITY_METRICS + CAPTION_METRICS
    with_mos = True

    def __init__(self, cfg, run_dir) -> None:
        super().__init__(cfg, run_dir)
        self.text = CaptionText(cfg, run_dir)

    # --- data -----------------------------------------------------------------------------------
    def setup(self) -> dict[str, Any]:
        facts = super().setup()
        column = self.cfg.data.comments_column or "comments"
        return {**facts, **self.text.build(self.splits["train"], column)}

    def load(self) -> None:
        super().load()
        self.text.load()

    # --- model ----------------------------------------------------------------------------------
    def example_batch(self, batch_size: int) -> dict[str, Any]:
        return {**super().example_batch(batch_size), **self.text.example_tokens(batch_size)}

    def step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        frozen = "features" in batch
        x = batch["features"][:, 0] if frozen else batch["image"]
        tokens = batch["tokens"]
        # captions are decoded for the image as it is only: combine_views keeps that view's
        settings = None if model.training or batch.get("tta_view", 0) else self.text.settings
        out = model(x, tokens[:, :-1], from_features=frozen, settings=settings)
        mos_loss, mos = self.mos_loss(out["mos"], batch["target"], training=model.training)
        caption_loss = self.text.loss(out["logits"], tokens, training=model.training)
        t = self.cfg.train
        caption = out["ids"] if settings else out["logits"].detach()
        return {"loss": t.mos_weight * mos_loss + t.caption_weight * caption_loss,
                "outputs": {"mos": mos, "caption": caption}}  # fmt: skip

    def combine_views(self, outputs: list[Any], batch: dict[str, Any]) -> dict[str, Any]:
        """TTA: the mean MOS over views; the caption of the image as it is (the first view)."""
        mos = torch.stack([o["mos"].float() for o in outputs]).mean(dim=0)
        combined = super().combine_views([mos], batch)
        return {**combined, "outputs": {"mos": combined["outputs"],
                                        "caption": outputs[0]["caption"]}}  # fmt: skip

    def metrics(self) -> QualityCaptionMetrics:
        return QualityCaptionMetrics(self.text.metrics())

    # --- results --------------------------------------------------------------------------------
    def submission_columns(self, probabilities: bool = False) -> list[str]:
        return [self.id_column, "mos", self.text.text_column]

    def postprocess(
        self,
        outputs: dict[str, torch.Tensor],
        batch: dict[str, Any],
        *,
        probabilities: bool = False,
    ) -> list[dict[str, Any]]:
        rows = super().postprocess(outputs["mos"], batch)
        for row, text in zip(rows, self.text.texts(outputs["caption"]), strict=True):
            row[self.text.text_column] = text
        return rows

    def report(self, metrics: QualityCaptionMetrics, out_dir: Path) -> dict[str, Any]:
        quality = super().report(metrics.quality, out_dir)
        return {**quality, **self.text.report(metrics.caption, self.records_seen, out_dir)}
