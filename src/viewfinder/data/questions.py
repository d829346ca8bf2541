"""Question batches for VQA: many questions per image, each image decoded and encoded once.

``QuestionBatches`` wraps a dataset of the distinct images (an ``ImageDataset``, or a
``FeatureDataset`` of cached grids in frozen mode) and is indexed by *question*. A batch holds
every distinct image of its questions once (``image``/``features``: (U, ...)), ``image_of`` (B,)
pointing each question at its image row, and per question: ``question`` token ids (``<pad>``-padded
to a multiple of 8), ``answer_target`` (the classifier's soft target over the top-K answers),
``tokens`` (the generative model's answer ids), ``answers`` (normalised reference answers) and
``questions`` (the text). ``index`` is the question index (the loop counts questions, inference
finds records by it). In training, a question about a flipped image is asked and answered with
"left" and "right" swapped (``WrappedBatches``, ``mirror_text``): "Is the star on the left
side?" of a mirrored image is "Is the star on the right side?", with the same answer.

``ImageGroupedSampler`` orders each training epoch by shuffled images, each image's questions
together, so a batch of 32 questions holds about 8 images: the backbone runs a quarter as often.
The order is a pure function of (seed, epoch), like the other samplers (resumable runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from viewfinder.data.sampling import _epoch_generator
from viewfinder.data.text import WrappedBatches, mirror_text, pad_ids


class QuestionBatches(WrappedBatches):
    """Questions over a dataset of distinct images; see the module doc."""

    def __init__(
        self,
        base: Any,
        records: list[Any],
        image_of: Sequence[int],
        *,
        question_ids: Callable[[str], list[int]],
        question_pad: int,
        question_length: int,
        answers: Sequence[Sequence[str]],
        soft_target: Callable[[Sequence[str]], dict[int, float]] | None,
        num_answers: int,
        answer_ids: Callable[[str], list[int]] | None = None,
        answer_pad: int = 0,
        answer_length: int = 8,
        mirror: bool = False,
        seed: int = 0,
    ) -> None:
        self.base, self.records, self.image_of = base, records, list(image_of)
        self.question_ids, self.question_pad = question_ids, question_pad
        self.question_length = question_length
        self.answers = [list(a) for a in answers]
        self.soft_target, self.num_answers = soft_target, num_answers
        self.answer_ids, self.answer_pad, self.answer_length = answer_ids, answer_pad, answer_length
        self._questions = [question_ids(r.question) for r in records]
        # question ids and answers as read for a flipped image, made on first use
        self._mirrored: dict[int, tuple[list[int], list[str]]] = {}
        self.mirror, self.seed = mirror, seed  # flips: ``WrappedBatches``

    def __len__(self) -> int:
        return len(self.records)

    @property
    def targets(self) -> list[list[str]] | None:
        """The answers when every question has one (scoreable), else None (unlabelled)."""
        return self.answers if self.answers and all(self.answers) else None

    def _images(self, questions: list[int]) -> tuple[dict[str, Any] | None, list[int], list[int]]:
        """The collated distinct images; the questions kept (their image was readable) and each
        one's row in the image batch."""
        from viewfinder.data.dataset import collate_skipping

        wanted = list(dict.fromkeys(self.image_of[q] for q in questions))
        getitems = getattr(self.base, "__getitems__", None)
        batch = collate_skipping(getitems(wanted) if getitems else [self.base[i] for i in wanted])
        if batch is None:
            return None, [], []
        row_of = {int(image): row for row, image in enumerate(batch["index"])}
        kept = [q for q in questions if self.image_of[q] in row_of]
        return batch, kept, [row_of[self.image_of[q]] for q in kept]

    def _targets(self, answers: list[list[str]]) -> torch.Tensor:
        target = torch.zeros(len(answers), self.num_answers)
        if self.soft_target is not None:
            for row, asked in enumerate(answers):
                for answer, score in self.soft_target(asked).items():
                    target[row, answer] = score
        return target

    def _asked(self, q: int, flipped: bool) -> tuple[list[int], list[str]]:
        """Question ``q``'s token ids and answers, "left"/"right" swapped for a flipped image."""
        if not flipped:
            return self._questions[q], self.answers[q]
        if q not in self._mirrored:
            question = self.question_ids(mirror_text(self.records[q].question))
            self._mirrored[q] = question, [mirror_text(a) for a in self.answers[q]]
        return self._mirrored[q]

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        images, kept, rows = self._images([int(i) for i in indices])
        if images is None or not kept:  # every image skipped: an empty batch the task drops
            return {"index": torch.zeros(0, dtype=torch.int64)}
        flips = self.flip_images(images)
        asked = [self._asked(q, flips[row]) for q, row in zip(kept, rows, strict=True)]
        answers = [a for _, a in asked]
        batch = {k: v for k, v in images.items() if k in ("image", "features")}
        batch.update(
            index=torch.tensor(kept, dtype=torch.int64),
            image_of=torch.tensor(rows, dtype=torch.int64),
            question=pad_ids([q for q, _ in asked], self.question_pad, self.question_length),
            answer_target=self._targets(answers),
            answers=answers,
            questions=[self.records[q].question for q in kept],
            skipped=len(indices) - len(kept),
        )  # fmt: skip
        if self.answer_ids is not None:
            ids = [self.answer_ids(a[0] if a else "") for a in batch["answers"]]
            batch["tokens"] = pad_ids(ids, self.answer_pad, self.answer_length)
        return batch

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])


class ImageGroupedSampler(Sampler[int]):
    """Question indices grouped by image, images shuffled per (seed, epoch); see the module doc."""

    def __init__(self, image_of: Sequence[int], *, seed: int = 0) -> None:
        super().__init__()
        groups: dict[int, list[int]] = {}
        for question, image in enumerate(image_of):
            groups.setdefault(int(image), []).append(question)
        self.groups = list(groups.values())
        self.seed, self.epoch = seed, 0
        self.total = len(image_of)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[int]:
        generator = _epoch_generator(self.seed, self.epoch)
        order = torch.randperm(len(self.groups), generator=generator).tolist()
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
        for g in order:
            yield from rng.permutation(self.groups[g]).tolist()
