"""Visual question answering: an image and a question in, a short answer out, scored by exact
match, VQA soft accuracy, and accuracy per answer type and per question type, against the
majority answer per question type (how much the image adds; ``metrics/vqa.py``).

Data: the competition CSV ``ID,image_id,question,answer`` with an image folder (``images=DIR``),
JSONL, or the VQA-v2 JSON pair (``data/vqa.py``); answers are normalised as the VQA evaluation
does (``data/answers.py``). The split is by image: no image is in both train and validation.
``answer_type=``, ``question_type=`` and ``max_questions=`` choose the training questions (the
test file is kept whole: a submission answers every row).

Models (``model.answerer``, ``models/vqa.py``): ``classifier``, the top-K training answers
(``answer_vocab=K``) over the fused image and question, trained with soft targets; or
``generative``, a caption decoder writing the answer. ``freeze_backbone=true`` trains on the
backbone's grid, cached once per image. Batches hold each image once (``data/questions.py``).

Run-folder state: ``vqa.json`` (columns, answerer), ``questions_vocab.json`` (or, with
``question_encoder=hf:NAME``, ``question_encoder/``: the encoder's tokenizer and config),
``answers.json`` (the classifier's answers) or ``answer_words.json``/``bpe.json`` (the
generator's tokens), ``split.csv``. Submission: ``ID,answer`` (the data's own column names).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from viewfinder.data.answers import AnswerVocab, normalize_answer
from viewfinder.data.bpe import BPETokenizer
from viewfinder.data.hf_tokenizer import EncoderTokenizer
from viewfinder.data.questions import ImageGroupedSampler, QuestionBatches
from viewfinder.data.sources import ImageRecord
from viewfinder.data.text import Vocabulary
from viewfinder.data.vqa import (
    QuestionRecord,
    VQAColumns,
    filter_questions,
    main_answer,
    read_vqa,
    read_vqa_split,
    split_by_image,
    write_vqa_split,
)
from viewfinder.errors import UserError
from viewfinder.metrics.vqa import METRIC_NAMES, VQAMetrics, majority_baseline, write_vqa_report
from viewfinder.models.decoding import DecodeSettings
from viewfinder.models.hf_encoder import encoder_source, save_encoder_config
from viewfinder.models.lm import loaded_model_config
from viewfinder.tasks.image import ImageTask

STATE = "vqa.json"
QUESTION_ENCODER = "question_encoder"  # hf: the encoder's tokenizer and config.json


def ordered_answers(answers: tuple[str, ...]) -> list[str]:
    """Normalised answers, the most common first (the generator's target, exact match's key)."""
    normal = [normalize_answer(a) for a in answers]
    if not normal:
        return []
    first = main_answer(answers)
    rest = list(normal)
    rest.remove(first)
    return [first, *rest]


class VQATask(ImageTask):
    name = "vqa"
    record_fields = ("id", "image_id", "path", "question", "answers")
    metric_names = METRIC_NAMES
    request_fields = ("question",)
    mirrors_texts = True  # flips swap "left"/"right" in the questions and answers

    def __init__(self, cfg, run_dir) -> None:
        super().__init__(cfg, run_dir)
        self.splits: dict[str, list[QuestionRecord]] = {}
        self.questions: Vocabulary | EncoderTokenizer | None = None
        self.model_cfg: Any = None  # load(): the model config a finished run rebuilds from
        self.question_source: tuple[str, bool] | None = None  # hf: where to build it, pretrained?
        self.answers: AnswerVocab | None = None  # classifier
        self.answer_words: Vocabulary | BPETokenizer | None = None  # generative
        self.columns = {"id": "ID", "answer": "answer"}
        self._asked: list[QuestionRecord] = []  # the questions of the dataset being built

    @property
    def generative(self) -> bool:
        return self.cfg.model.answerer == "generative"

    # --- data -----------------------------------------------------------------------------------
    def _read(self, path: str, *, skip: bool) -> Any:
        d = self.cfg.data
        cols = VQAColumns(id=d.id_column, image=d.image_column, question=d.question_column,
                          answer=d.answer_column)  # fmt: skip
        return read_vqa(path, images=d.images, skip_bad=skip, columns=cols)

    def setup(self) -> dict[str, Any]:
        d = self.cfg.data
        if not d.path:
            raise UserError("no data given: pass data=PATH (ID,image_id,question,answer CSV, "
                            "JSONL, or VQA-v2 questions JSON) and images=DIR")  # fmt: skip
        source = self._read(d.path, skip=d.on_bad_image == "skip")
        if not all(r.answers for r in source.train):
            raise UserError(f"{d.path}: the training questions have no answers (answer column)")
        keep = {"answer_type": d.answer_type, "question_type": d.question_type,
                "max_questions": d.max_questions}  # fmt: skip
        train, val = filter_questions(source.train, **keep), filter_questions(source.val, **keep)
        if len(train) < 2:
            used = {k: v for k, v in keep.items() if v}
            raise UserError(f"{d.path}: {len(train)} training question(s) after the filters "
                            f"{used}; need at least 2")  # fmt: skip
        if not val:
            train, val = split_by_image(train, d.val_fraction, self.cfg.train.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        splits, bad = self._drop_unreadable({"train": train, "val": val, "test": source.test})
        self.splits = splits
        self.columns = {"id": source.id_column, "answer": source.answer_column}
        write_vqa_split(self.run_dir / "split.csv", splits)
        facts = self._build_text(splits)
        both = {r.image_id for r in splits["train"]} & {r.image_id for r in splits["val"]}
        return {
            "layout": "questions", "answerer": self.cfg.model.answerer,
            "split_sizes": {k: len(v) for k, v in splits.items()},
            "split_images": {k: len({r.image_id for r in v}) for k, v in splits.items()},
            "images_in_train_and_val": len(both), "skipped_images": len(bad),
            "skipped_rows": self.write_skipped_rows(source.skipped_rows),
            "duplicate_rows": source.duplicates,
            **facts,
        }  # fmt: skip

    def _drop_unreadable(
        self, splits: dict[str, list[QuestionRecord]]
    ) -> tuple[dict[str, list[QuestionRecord]], list]:
        """``on_bad_image`` once per distinct image; questions about unreadable ones dropped."""
        images = {s: self._images(q) for s, q in splits.items()}
        kept, bad = self.drop_bad_images(images)
        good = {r.path for records in kept.values() for r in records}
        return {s: [q for q in v if q.path in good] for s, v in splits.items()}, bad

    def _build_text(self, splits: dict[str, list[QuestionRecord]]) -> dict[str, Any]:
        t, train = self.cfg.text, splits["train"]
        self.questions = self._question_tokenizer([r.question for r in train])
        truncated = sum(self.questions.encode(r.question, t.max_length).truncated for r in train)
        facts: dict[str, Any] = {"question_vocabulary": len(self.questions),
                                 "truncated_questions": truncated}  # fmt: skip
        if self.generative:
            self.answer_words = self._answer_tokenizer([ordered_answers(r.answers)[0]
                                                        for r in train])  # fmt: skip
            facts["answer_tokens"] = len(self.answer_words)
        else:
            self.answers = AnswerVocab.build([ordered_answers(r.answers) for r in train],
                                             self.cfg.model.answer_vocab)  # fmt: skip
            self.answers.save(self.run_dir / "answers.json")
            val = [ordered_answers(r.answers) for r in splits["val"] if r.answers]
            facts.update(
                answer_vocabulary=len(self.answers),
                val_answer_coverage=round(self.answers.coverage(val), 4) if val else None,
            )
        state = {"columns": self.columns, "answerer": self.cfg.model.answerer}
        (self.run_dir / STATE).write_text(json.dumps(state, indent=2))
        return facts

    def _question_tokenizer(self, texts: list[str]) -> Vocabulary | EncoderTokenizer:
        """A word vocabulary of the training questions, or an ``hf:`` encoder's own tokenizer,
        saved with the encoder's config (evaluate/predict build it without the hub)."""
        source = encoder_source(self.cfg.model.question_encoder)
        if source is None:
            vocab = Vocabulary.build(texts, min_count=self.cfg.text.min_count,
                                     max_size=self.cfg.text.vocab_size)  # fmt: skip
            vocab.save(self.run_dir / "questions_vocab.json")
            return vocab
        tokenizer = EncoderTokenizer.from_pretrained(source)
        tokenizer.save(self.run_dir / QUESTION_ENCODER)
        save_encoder_config(source, self.run_dir / QUESTION_ENCODER)
        self.question_source = (source, True)
        return tokenizer

    def _answer_tokenizer(self, texts: list[str]) -> Vocabulary | BPETokenizer:
        """Words of the training answers (every word kept), or an LM decoder's own BPE."""
        from viewfinder.models.lm import lm_source, save_lm_config

        source = lm_source(self.cfg.model.decoder)
        if source is not None:
            save_lm_config(source, self.run_dir)
            tokenizer = BPETokenizer.from_pretrained(source)
            tokenizer.save(self.run_dir / "bpe.json")
            return tokenizer
        vocab = Vocabulary.build(texts, min_count=1)
        vocab.save(self.run_dir / "answer_words.json")
        return vocab

    def load(self) -> None:
        path = self.run_dir / STATE
        if not path.is_file():
            raise UserError(f"{self.run_dir}: not a vqa run folder ({STATE} missing)")
        state = json.loads(path.read_text())
        self.columns = state["columns"]
        if encoder_source(self.cfg.model.question_encoder) is None:
            self.questions = Vocabulary.load(self.run_dir / "questions_vocab.json")
        else:  # the encoder is rebuilt from its config; the checkpoint holds its weights
            self.questions = EncoderTokenizer.load(self.run_dir / QUESTION_ENCODER)
            self.question_source = (str(self.run_dir / QUESTION_ENCODER), False)
        if self.generative:
            bpe, words = self.run_dir / "bpe.json", self.run_dir / "answer_words.json"
            self.answer_words = BPETokenizer.load(bpe) if bpe.is_file() else Vocabulary.load(words)
        else:
            self.answers = AnswerVocab.load(self.run_dir / "answers.json")
        self.model_cfg = loaded_model_config(self.cfg.model, self.run_dir)  # an LM decoder
        split = self.run_dir / "split.csv"
        self.splits = read_vqa_split(split) if split.is_file() else {}

    @staticmethod
    def _images(questions: list[QuestionRecord]) -> list[ImageRecord]:
        """The distinct images the questions ask about, in order of first question."""
        first = {r.path: r.image_id for r in reversed(questions)}
        return [ImageRecord(first[p], p, None) for p in dict.fromkeys(r.path for r in questions)]

    def _questions(self, split: str, data: str | None) -> list[QuestionRecord]:
        if data is None:
            return self.split_records(split)
        if not Path(data).exists():
            raise UserError(f"{data}: data path not found")
        return self._read(data, skip=self.cfg.data.on_bad_image == "skip").train

    def _records(self, split: str, data: str | None) -> list[ImageRecord]:
        return self._images(self._asked)

    def _targets(self, records: list[Any]) -> None:  # answers travel with the questions
        return None

    def dataset(self, split: str, *, train: bool, data: str | None = None) -> Dataset:
        questions = self._asked = self._questions(split, data)
        images = super().dataset(split, train=train, data=data)
        row = {r.path: i for i, r in enumerate(self._images(questions))}
        self.records_seen = questions
        flips = {"mirror": self.mirror(train=train, data=data), "seed": self.cfg.train.seed}
        return QuestionBatches(images, questions, [row[q.path] for q in questions], **flips,
                               **self._text_settings(questions))  # fmt: skip

    def _text_settings(self, questions: list[QuestionRecord]) -> dict[str, Any]:
        t = self.cfg.text
        settings: dict[str, Any] = {
            "question_ids": lambda text: self.questions.encode(text, t.max_length).ids,
            "question_pad": self.questions.pad, "question_length": t.max_length,
            "answers": [ordered_answers(q.answers) for q in questions],
            "soft_target": None if self.generative else self.answers.soft_target,
            "num_answers": 1 if self.generative else len(self.answers),
        }  # fmt: skip
        if self.generative:
            words = self.answer_words
            settings.update(answer_ids=lambda text: words.encode(text, t.answer_length).ids,
                            answer_pad=words.pad, answer_length=t.answer_length)  # fmt: skip
        return settings

    def request_dataset(self, images: list[Any], fields: list[dict[str, str]]) -> Dataset:
        """One question per uploaded image (``question`` field), batched as ``dataset`` does."""
        base = super().request_dataset(images, fields)
        questions = [QuestionRecord(r.id, r.id, r.path, f["question"], ())
                     for r, f in zip(base.records, fields, strict=True)]  # fmt: skip
        return QuestionBatches(base, questions, range(len(questions)),
                               **self._text_settings(questions))  # fmt: skip

    def train_sampler(self, dataset: Dataset) -> Any:
        """End to end, each image's questions in one batch (the backbone runs once per image).
        Frozen, a cached grid is cheap to repeat, so questions are shuffled freely: batches of
        a few images' questions each were 10-20 % faster per epoch but scored 0.01-0.03 less on
        the demo questions at equal epochs (docs/benchmarks.md)."""
        if self.cfg.model.freeze_backbone:
            return None
        return ImageGroupedSampler(dataset.image_of, seed=self.cfg.train.seed)

    def _feature_name(self) -> str:
        from viewfinder.models.classifier import parse_model_name

        return parse_model_name(self.cfg.model.name).backbone + ":grid+colour"

    def training_model(self, model: nn.Module, numerics: Any, device: torch.device) -> nn.Module:
        """Frozen mode: cached grids, read by the VQA model itself (``from_features=True``); a
        frozen Hugging Face question encoder remembers each question's vector."""
        cache_questions = getattr(model.head.question, "cache_questions", None)
        if cache_questions is not None:
            cache_questions()
        if self.cfg.model.freeze_backbone:
            self._frozen = (model.to(device), numerics, device)
        return model

    # --- model ----------------------------------------------------------------------------------
    def build_model(self) -> tuple[nn.Module, str]:
        from viewfinder.models.vqa import build_vqa_model

        t, words = self.cfg.text, self.answer_words
        source, pretrained = self.question_source or (None, False)
        model, note = build_vqa_model(
            self.model_cfg or self.cfg.model, question_vocab=len(self.questions),
            pad=self.questions.pad,
            question_length=t.max_length, answers=len(self.answers) if self.answers else 1,
            answer_vocab=len(words) if words else 1, answer_length=t.answer_length,
            question_source=source, question_pretrained=pretrained,
        )  # fmt: skip
        return model, self.prepare_image_model(model, note)

    def example_batch(self, batch_size: int) -> dict[str, Any]:
        size, images = self.cfg.image_size, max(1, batch_size // 4)
        question = torch.randint(4, max(5, len(self.questions)), (batch_size, 16))
        batch = {"image": torch.randn(images, 3, size, size), "question": question,
                 "image_of": torch.arange(batch_size) % images,
                 "answer_target": torch.zeros(batch_size, len(self.answers or [0]))}  # fmt: skip
        batch["answer_target"][:, 0] = 1.0
        if self.generative:
            tokens = torch.randint(4, max(5, len(self.answer_words)), (batch_size, 4))
            batch["tokens"] = tokens.index_fill(1, torch.tensor([0]), self.answer_words.bos)
        return batch

    @property
    def settings(self) -> DecodeSettings:
        w, t = self.answer_words, self.cfg.text
        base = DecodeSettings.from_config(t, w.bos, w.eos, w.pad)
        return dataclasses.replace(base, max_length=t.answer_length)

    def step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        frozen = "features" in batch
        x = batch["features"][:, 0] if frozen else batch["image"]
        if not self.generative:
            out = model(x, batch["question"], batch["image_of"], from_features=frozen)
            logits = out["logits"]
            return {"loss": soft_cross_entropy(logits, batch["answer_target"]),
                    "outputs": logits.detach()}  # fmt: skip
        tokens = batch["tokens"]
        settings = None if model.training else self.settings
        out = model(x, batch["question"], batch["image_of"], tokens[:, :-1],
                    from_features=frozen, settings=settings)  # fmt: skip
        loss = answer_token_loss(
            out["logits"],
            tokens,
            self.answer_words.pad,
            self.cfg.train.label_smoothing if model.training else 0.0,
        )
        return {"loss": loss, "outputs": out["ids"] if settings else out["logits"].detach()}

    def combine_views(self, outputs: list[torch.Tensor], batch: dict[str, Any]) -> dict:
        if self.generative:
            raise UserError("generative VQA has no test-time augmentation; use tta=none")
        logits = torch.stack([o.float().log_softmax(dim=1) for o in outputs]).mean(0)
        return {"loss": soft_cross_entropy(logits, batch["answer_target"]), "outputs": logits}

    def to_answers(self, outputs: torch.Tensor) -> list[str]:
        """Model outputs -> normalised answer strings."""
        if self.generative:
            return [normalize_answer(self.answer_words.decode(seq)) for seq in outputs.tolist()]
        return [self.answers.answers[i] for i in outputs.argmax(dim=1).tolist()]

    def metrics(self) -> VQAMetrics:
        return VQAMetrics(self.to_answers)

    # --- results --------------------------------------------------------------------------------
    def submission_columns(self, probabilities: bool = False) -> list[str]:
        return [self.columns["id"], self.columns["answer"]]

    def postprocess(
        self, outputs: torch.Tensor, batch: dict[str, Any], *, probabilities: bool = False
    ) -> list[dict[str, Any]]:
        answers = self.to_answers(outputs)
        return [{self.columns["id"]: r.id, self.columns["answer"]: a}
                for r, a in zip(batch["records"], answers, strict=True)]  # fmt: skip

    def report(self, metrics: VQAMetrics, out_dir: Path) -> dict[str, Any]:
        """Per-type tables and plots, with the majority-answer-per-question-type baseline."""
        train = [(r.question, ordered_answers(r.answers)[0])
                 for r in self.splits.get("train", []) if r.answers]  # fmt: skip
        evaluated = [(question, refs) for _, question, _, refs in metrics.items() if refs]
        baseline = majority_baseline(train, evaluated) if train and evaluated else None
        return write_vqa_report(metrics, out_dir, baseline)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against each question's answer scores normalised to sum 1 (one answer: plain
    cross-entropy); questions whose answers are all outside the top-K add nothing."""
    mass = target.sum(dim=1)
    rows = mass > 0
    if not bool(rows.any()):
        return logits.sum() * 0.0
    log_probs = logits[rows].float().log_softmax(dim=1)
    return -(target[rows] / mass[rows, None] * log_probs).sum(dim=1).mean()


def answer_token_loss(
    logits: torch.Tensor, tokens: torch.Tensor, pad: int, smoothing: float
) -> torch.Tensor:
    target = tokens[:, 1:]
    if bool((target == pad).all()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=pad,
                           label_smoothing=smoothing)  # fmt: skip
