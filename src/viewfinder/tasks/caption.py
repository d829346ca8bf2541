"""Captioning: generate a caption per image, scored as COCO and the camera image-quality challenge
score it (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D over the whole set, and the challenge's caption
score; ``metrics/captions.py``).

Data: ``image_id,caption`` CSVs, the challenge's ``img_name,img_path,mos,comments`` CSV, or COCO
JSON (``data/captions.py``); the split is by image. The model is any timm backbone (``cnn``
too) + a decoder (``model.decoder``: ``lstm``/``gru`` with optional grid attention, or a small
``transformer``; ``models/text.py``) trained with teacher forcing and label smoothing on the word
vocabulary of the training captions (``data/text.py``), or a Hugging Face causal LM (``gpt2``,
``hf:NAME_OR_FOLDER``; ``models/lm.py``) fed the image as prefix tokens, on the LM's own BPE
(``data/bpe.py``). Validation generates captions (greedy or beam search, ``text.*``;
``models/decoding.py``) and scores them: ``train.monitor`` defaults to ``cider_d``, which needs
no Java and carries most of the caption score's weight. ``freeze_backbone=true`` trains the
decoder on cached backbone features.

``CaptionText`` is the text side on its own, so the multitask ``iqa+caption`` model reuses it.
Run-folder state: ``vocab.json`` (or ``bpe.json``), ``caption.json`` (id and caption columns),
``split.csv``.
Submission: ``<id>,<caption column>`` (``img_name,comments`` for the challenge's CSV).
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from viewfinder.data.bpe import BPETokenizer
from viewfinder.data.captions import read_captions
from viewfinder.data.dataset import collate_skipping
from viewfinder.data.quality import (
    QualityColumns,
    QualityRecord,
    read_quality_split,
    write_quality_split,
)
from viewfinder.data.sampling import holdout_split
from viewfinder.data.text import TextBatches, Vocabulary
from viewfinder.errors import UserError
from viewfinder.metrics.captions import (
    METRIC_NAMES,
    CaptionMetrics,
    java_available,
    plot_caption_grid,
    warm_up_meteor,
)
from viewfinder.models.decoding import DecodeSettings
from viewfinder.models.lm import loaded_model_config
from viewfinder.tasks.image import ImageTask

GRID_IMAGES = 12  # images in the evaluation's caption grid
TOKENIZER_FILES = {"word": "vocab.json", "bpe": "bpe.json"}  # in the run folder


class CaptionText:
    """The text side of a captioning task: vocabulary, batches with tokens, loss, decoding
    settings, metrics and the caption report. State: ``vocab.json`` (words) or ``bpe.json`` (a
    Hugging Face LM decoder's BPE, ``data/bpe.py``) and ``caption.json``."""

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.vocab: Vocabulary | BPETokenizer | None = None
        self.text_column = "caption"
        self.model_cfg = cfg.model  # load(): an LM decoder is rebuilt from the run folder

    def _tokenizer(self, texts: list[str]) -> Vocabulary | BPETokenizer:
        """Words of the training captions for the decoders trained from scratch; a Hugging Face
        LM's own BPE for an LM decoder (``text.tokenizer=auto`` picks)."""
        from viewfinder.models.lm import lm_source, save_lm_config

        t, decoder = self.cfg.text, self.cfg.model.decoder
        source = lm_source(decoder)
        if source is None:
            if t.tokenizer == "bpe":
                raise UserError(f"text.tokenizer=bpe needs a Hugging Face LM decoder (gpt2, "
                                f"distilgpt2, hf:NAME_OR_FOLDER), not model.decoder={decoder}; "
                                "use tokenizer=word")  # fmt: skip
            return Vocabulary.build(texts, min_count=t.min_count, max_size=t.vocab_size)
        if t.tokenizer == "word":
            raise UserError(f"text.tokenizer=word does not fit model.decoder={decoder}: an LM "
                            "reads its own BPE; use tokenizer=auto or bpe")  # fmt: skip
        tokenizer = BPETokenizer.from_pretrained(source)
        save_lm_config(source, self.run_dir)
        return tokenizer

    def build(self, records: list[QualityRecord], text_column: str) -> dict[str, Any]:
        """The vocabulary of the training captions, saved; facts for the run summary."""
        t = self.cfg.text
        texts = [c for r in records for c in r.comments]
        self.vocab = self._tokenizer(texts)
        self.text_column = text_column
        truncated = sum(self.vocab.encode(c, t.max_length).truncated for c in texts)
        kind = "bpe" if isinstance(self.vocab, BPETokenizer) else "word"
        self.vocab.save(self.run_dir / TOKENIZER_FILES[kind])
        state = {"text_column": text_column, "truncated_captions": truncated, "tokenizer": kind}
        (self.run_dir / "caption.json").write_text(json.dumps(state, indent=2))
        if self.java:
            warm_up_meteor()  # Java loads METEOR's tables while the first epoch trains
        elif t.scorer == "auto":
            warnings.warn("no Java runtime: captions are scored without METEOR and the caption "
                          "score (java_free=1); install Java 17 for the challenge's exact scores",
                          stacklevel=2)  # fmt: skip
        return {"vocabulary": len(self.vocab), "train_captions": len(texts),
                "truncated_captions": truncated, "max_length": t.max_length}  # fmt: skip

    def load(self) -> None:
        path = self.run_dir / "caption.json"
        if not path.is_file():
            raise UserError(f"{self.run_dir}: not a caption run folder (caption.json missing)")
        state = json.loads(path.read_text())
        self.text_column, kind = state["text_column"], state.get("tokenizer", "word")
        loader = BPETokenizer if kind == "bpe" else Vocabulary
        self.vocab = loader.load(self.run_dir / TOKENIZER_FILES[kind])
        self.model_cfg = loaded_model_config(self.cfg.model, self.run_dir)

    def training_model(
        self, task: ImageTask, model: nn.Module, numerics: Any, device: torch.device
    ) -> nn.Module:
        """Frozen mode: the image task caches backbone features and the captioner itself reads
        them (``from_features=True``), so the model is trained as it is."""
        if self.cfg.model.freeze_backbone:
            task._frozen = (model.to(device), numerics, device)
        return model

    def feature_name(self) -> str:
        """Captioners cache the backbone's feature grid, never the pooled vector."""
        from viewfinder.models.classifier import parse_model_name

        return parse_model_name(self.cfg.model.name).backbone + ":grid"

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(text, self.cfg.text.max_length).ids

    def wrap(
        self, base: Dataset, records: list[QualityRecord], *, train: bool, mirror: bool = False
    ) -> TextBatches:
        return TextBatches(base, records, [r.comments for r in records], self.encode,
                           self.vocab.pad, max_length=self.cfg.text.max_length, train=train,
                           seed=self.cfg.train.seed, mirror=mirror)  # fmt: skip

    @property
    def settings(self) -> DecodeSettings:
        v = self.vocab
        return DecodeSettings.from_config(self.cfg.text, v.bos, v.eos, v.pad)

    def loss(self, logits: torch.Tensor, tokens: torch.Tensor, *, training: bool) -> torch.Tensor:
        """Next-token cross-entropy over real tokens (label smoothing in training only); images
        without a caption (``<bos><eos>`` only) add nothing."""
        target = tokens[:, 1:].clone()
        target[tokens[:, 1] == self.vocab.eos] = self.vocab.pad  # no caption: nothing to learn
        if bool((target == self.vocab.pad).all()):
            return logits.sum() * 0.0
        smoothing = self.cfg.train.label_smoothing if training else 0.0
        return F.cross_entropy(logits.float().transpose(1, 2), target,
                               ignore_index=self.vocab.pad, label_smoothing=smoothing)  # fmt: skip

    def example_tokens(self, batch_size: int) -> dict[str, Any]:
        length = min(12, self.cfg.text.max_length)
        tokens = torch.randint(4, max(5, len(self.vocab)), (batch_size, length))
        tokens[:, 0] = self.vocab.bos
        return {"tokens": tokens, "references": [["a"]] * batch_size}

    @property
    def java(self) -> bool:
        """Whether captions are scored exactly (pycocoevalcap on Java); ``text.scorer``."""
        return self.cfg.text.scorer == "auto" and java_available()

    def metrics(self) -> CaptionMetrics:
        return CaptionMetrics(self.vocab.decode, java=self.java)

    def texts(self, ids: torch.Tensor) -> list[str]:
        return [self.vocab.decode(seq) for seq in ids.tolist()]

    def report(self, metrics: CaptionMetrics, records: list[Any], out_dir: Path) -> dict:
        """``captions.csv`` (generated and human captions per image), ``captions.png`` (a grid)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        items = metrics.captions()
        with open(out_dir / "captions.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "path", "generated", "references"])
            for index, generated, refs in items:
                record = records[index]
                writer.writerow([record.id, record.path, generated, json.dumps(refs)])
        grid = [(records[i].path, c, r) for i, c, r in items[:GRID_IMAGES]]
        if grid:
            plot_caption_grid(grid, out_dir / "captions.png")
        return metrics.compute()


class CaptionedImages:
    """What a task with a caption head adds to an image task (``caption``, ``iqa+caption``):
    text batches, frozen grid features read by the captioner itself, and the captioner built
    with the run's vocabulary. Mixed in before the image task (``class T(CaptionedImages,
    ImageTask)``); the task sets ``self.text``, a ``CaptionText``."""

    text: CaptionText
    with_mos: bool = False  # a MOS head beside the caption head (iqa+caption)
    mirrors_texts = True  # a flipped image's caption reads "on the right" for "on the left"

    def dataset(self, split: str, *, train: bool, data: str | None = None) -> Dataset:
        base = super().dataset(split, train=train, data=data)
        mirror = self.mirror(train=train, data=data)  # type: ignore[attr-defined]
        return self.text.wrap(base, self.records_seen, train=train, mirror=mirror)

    def request_dataset(self, images: list[Any], fields: list[dict[str, str]]) -> Dataset:
        base = super().request_dataset(images, fields)
        records = [QualityRecord(r.id, r.path, None) for r in base.records]
        return self.text.wrap(base, records, train=False)

    def collate(self, items: Any) -> dict[str, Any] | None:
        return collate_skipping(items)

    def training_model(self, model: nn.Module, numerics: Any, device: torch.device) -> nn.Module:
        return self.text.training_model(self, model, numerics, device)

    def _feature_name(self) -> str:
        return self.text.feature_name()

    def build_model(self) -> tuple[nn.Module, str]:
        from viewfinder.models.text import build_captioner

        text, cfg = self.text, self.cfg
        model, note = build_captioner(text.model_cfg, len(text.vocab), cfg.text.max_length,
                                      with_mos=self.with_mos)  # fmt: skip
        return model, self.prepare_image_model(model, note)


class CaptionTask(CaptionedImages, ImageTask):
    name = "caption"
    record_fields = ("id", "path", "captions")
    metric_names = METRIC_NAMES
    missing_target = float("nan")

    def __init__(self, cfg, run_dir) -> None:
        super().__init__(cfg, run_dir)
        self.splits: dict[str, list[QualityRecord]] = {}
        self.text = CaptionText(cfg, run_dir)
        self.id_column = "image_id"

    # --- data -----------------------------------------------------------------------------------
    def _columns(self) -> QualityColumns:
        d = self.cfg.data
        return QualityColumns(d.image_column, d.id_column, None, d.comments_column)

    def setup(self) -> dict[str, Any]:
        d = self.cfg.data
        if not d.path:
            raise UserError("no data given: pass data=PATH (image_id,caption CSV, COCO JSON, or "
                            "the img_name,img_path,mos,comments CSV)")  # fmt: skip
        skip = d.on_bad_image == "skip"
        source, text_column = read_captions(d.path, self._columns(), images=d.images,
                                            skip_bad=skip)  # fmt: skip
        train, uncaptioned = self._captioned(source.train, "train", skip)
        val, more = self._captioned(source.val, "val", skip)
        if len(train) < 2:
            raise UserError(f"{d.path}: need at least 2 training images with a caption")
        if not val:
            train, val = holdout_split(train, d.val_fraction, self.cfg.train.seed)
        splits, skipped = self.drop_bad_images({"train": train, "val": val, "test": source.test})
        self.splits, self.id_column = splits, source.id_column
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_quality_split(self.run_dir / "split.csv", splits)
        (self.run_dir / "ids.json").write_text(json.dumps({"id_column": self.id_column}))
        facts = self.text.build(splits["train"], text_column)
        return {
            "layout": "captions", "split_sizes": {k: len(v) for k, v in splits.items()},
            "skipped_images": len(skipped),
            "skipped_rows": self.write_skipped_rows(source.skipped_rows),
            "images_without_captions": uncaptioned + more, **facts,
        }  # fmt: skip

    def _captioned(
        self, records: list[QualityRecord], split: str, skip: bool
    ) -> tuple[list[QualityRecord], int]:
        """Records with at least one caption; an uncaptioned one is an error unless skipping."""
        kept = [r for r in records if r.comments]
        if len(kept) < len(records) and not skip:
            first = next(r for r in records if not r.comments)
            raise UserError(f"{split} image {first.id!r} ({first.path}) has no caption; fix the "
                            "data or pass on_bad_image=skip")  # fmt: skip
        return kept, len(records) - len(kept)

    def load(self) -> None:
        self.text.load()
        ids = self.run_dir / "ids.json"
        self.id_column = json.loads(ids.read_text())["id_column"] if ids.is_file() else "image_id"
        split_file = self.run_dir / "split.csv"
        self.splits = read_quality_split(split_file) if split_file.is_file() else {}

    def _records(self, split: str, data: str | None) -> list[QualityRecord]:
        if data is None:
            return self.split_records(split)
        path = Path(data)
        if path.is_file():
            source, _ = read_captions(path, self._columns(), images=self.cfg.data.images)
            return source.train
        from viewfinder.data.sources import read_unlabelled

        return [QualityRecord(r.id, r.path, None) for r in read_unlabelled(path)]

    def _targets(self, records: list[QualityRecord]) -> None:
        return None

    # --- model ----------------------------------------------------------------------------------
    def example_batch(self, batch_size: int) -> dict[str, Any]:
        size = self.cfg.image_size
        return {"image": torch.randn(batch_size, 3, size, size),
                **self.text.example_tokens(batch_size)}  # fmt: skip

    def step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Training: teacher-forced loss. Evaluation: that loss, and generated ids as outputs."""
        frozen = "features" in batch
        x = batch["features"][:, 0] if frozen else batch["image"]
        tokens = batch["tokens"]
        settings = None if model.training else self.text.settings
        out = model(x, tokens[:, :-1], from_features=frozen, settings=settings)
        loss = self.text.loss(out["logits"], tokens, training=model.training)
        return {"loss": loss, "outputs": out["ids"] if settings else out["logits"].detach()}

    def metrics(self) -> CaptionMetrics:
        return self.text.metrics()

    # --- results --------------------------------------------------------------------------------
    def submission_columns(self, probabilities: bool = False) -> list[str]:
        return [self.id_column, self.text.text_column]

    def postprocess(
        self, outputs: torch.Tensor, batch: dict[str, Any], *, probabilities: bool = False
    ) -> list[dict[str, Any]]:
        return [
            {self.id_column: record.id, self.text.text_column: text}
            for record, text in zip(batch["records"], self.text.texts(outputs), strict=True)
        ]

    def report(self, metrics: CaptionMetrics, out_dir: Path) -> dict[str, Any]:
        return self.text.report(metrics, self.records_seen, out_dir)
