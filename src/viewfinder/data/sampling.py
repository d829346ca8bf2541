"""Train/validation splits that are reproducible and can be written next to a run, and samplers.

Splits are stratified so a rare class is not left out of validation by chance, and seeded so the
same data and seed give the same split on any machine. A split is saved as a small CSV in the run
folder (``split,id,path,label``) so ``evaluate`` and ``compare`` score on exactly the images the run
held out, even if the data folder gains files later. ``stratified_kfold`` gives cross-validation
folds with the same guarantees.

For long-tailed data the training order can be re-balanced (``build_sampler``): class-balanced
sampling with replacement (weights "inverse", "sqrt", "effective") or LVIS repeat-factor sampling.
Every sampler's order is a pure function of ``(seed, epoch)`` so a run resumed mid-epoch replays
the same batches.
"""

from __future__ import annotations

import csv
import math
import numbers
import zlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from viewfinder.data.sources import ImageRecord
from viewfinder.errors import UserError, did_you_mean
from viewfinder.registry import Registry

SPLIT_COLUMNS = ("split", "id", "path", "label")
STANDARD_SPLITS = ("train", "val", "test")


def _validate_fraction(val_fraction: float) -> None:
    valid = (
        isinstance(val_fraction, numbers.Real)
        and not isinstance(val_fraction, bool)
        and 0 < val_fraction < 1  # NaN fails this comparison too
    )
    if not valid:
        raise UserError(
            f"val_fraction={val_fraction!r} must be a number between 0 and 1 (exclusive), "
            "e.g. val_fraction=0.2"
        )


def _class_rng(seed: int, label: str) -> np.random.Generator:
    """One generator per class, keyed by the label text.

    Keying by label (not by class order) means adding or removing a class leaves every other
    class's split unchanged; crc32 is stable across processes, unlike ``hash``.
    """
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def stratified_split(
    labels: Sequence[str], *, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices of ``labels`` into (train, val), class by class, both sorted.

    Each class puts ``round(n * val_fraction)`` items in val, but at least 1 and at most ``n - 1``
    when it has 2 or more items, so every class is both trained on and validated; a class with a
    single item stays in train.
    """
    _validate_fraction(val_fraction)
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(str(label), []).append(index)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(by_class):
        indices = np.asarray(by_class[label])
        count = len(indices)
        n_val = 0 if count < 2 else min(max(math.floor(count * val_fraction + 0.5), 1), count - 1)
        shuffled = _class_rng(seed, label).permutation(indices)
        val.extend(int(i) for i in shuffled[:n_val])
        train.extend(int(i) for i in shuffled[n_val:])
    return sorted(train), sorted(val)


def write_split(path: Path, records_by_split: dict[str, list[ImageRecord]]) -> None:
    """Write ``split,id,path,label`` rows (empty label for unlabelled records)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SPLIT_COLUMNS)
        for split, records in records_by_split.items():
            for record in records:
                label = "" if record.label is None else record.label
                writer.writerow([split, record.id, record.path.as_posix(), label])


def read_split(path: Path) -> dict[str, list[ImageRecord]]:
    """Read a file written by ``write_split``.

    The result always has "train", "val" and "test" (empty when absent), then any other split
    names in file order. Relative paths are taken relative to the split file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: split file not found (check the path or re-run training)")
    splits: dict[str, list[ImageRecord]] = {name: [] for name in STANDARD_SPLITS}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in SPLIT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(
                f"{path}: not a split file; missing columns {missing} "
                f"(expected {', '.join(SPLIT_COLUMNS)})"
            )
        for row in reader:
            image = Path(row["path"])
            image = image if image.is_absolute() else path.parent / image
            record = ImageRecord(id=row["id"], path=image, label=row["label"] or None)
            splits.setdefault(row["split"], []).append(record)
    return splits


# --- Cross-validation folds -------------------------------------------------------------------


def stratified_kfold(
    labels: Sequence[str], folds: int, seed: int
) -> list[tuple[list[int], list[int]]]:
    """``folds`` pairs of (train, val) indices, both sorted; every index is in exactly one val.

    Each class is shuffled with its own seeded generator (as in ``stratified_split``) and dealt
    round-robin over the folds, starting where the previous class (in sorted label order) stopped.
    So each class's count differs by at most 1 between folds, and so does the folds' total size;
    small classes do not all pile into fold 0. A class with fewer items than ``folds`` is allowed:
    the folds it cannot reach have none of it in val (and all of it in train). Unlike
    ``stratified_split``, adding a class can move later classes between folds: even fold sizes
    were judged worth more here.
    """
    valid = isinstance(folds, numbers.Integral) and not isinstance(folds, bool)
    if not valid or not 2 <= folds <= len(labels):
        raise UserError(
            f"folds={folds!r} must be a whole number from 2 to the number of samples "
            f"({len(labels)}), e.g. folds=5"
        )
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(str(label), []).append(index)
    val_sets: list[list[int]] = [[] for _ in range(folds)]
    position = 0
    for label in sorted(by_class):
        for index in _class_rng(seed, label).permutation(np.asarray(by_class[label])):
            val_sets[position % folds].append(int(index))
            position += 1
    result = []
    for val in val_sets:
        held_out = set(val)
        train = [i for i in range(len(labels)) if i not in held_out]
        result.append((train, sorted(val)))
    return result


# --- Class-balanced weights -------------------------------------------------------------------

WEIGHT_SCHEMES = ("none", "inverse", "sqrt", "effective")


def _as_counts(counts: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu().numpy()
    array = np.asarray(counts, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise UserError(f"class counts must be a non-empty list of numbers, got {array.tolist()}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise UserError(f"class counts must be finite and >= 0, got {array.tolist()}")
    return array


def balanced_class_weights(
    counts: Sequence[float] | np.ndarray | torch.Tensor, scheme: str, beta: float = 0.999
) -> np.ndarray:
    """Per-class weights (float64) that up-weight rare classes; shared by losses and samplers.

    "none": 1; "inverse": 1/n_c; "sqrt": 1/sqrt(n_c) (a milder re-balance); "effective": the
    inverse effective number of samples (1-beta)/(1-beta^n_c) of Cui et al. (CVPR 2019), which
    goes from "none" (beta=0) to "inverse" (beta -> 1); 0.999 is their common choice.
    Weights are scaled so that sum_c w_c n_c == sum_c n_c: the average weight per *sample* is 1,
    so switching schemes does not change the loss scale (or the effective learning rate).
    Classes with count 0 get weight 0 under every scheme ("none" included): they have no samples
    to weight, and 1/0 must not put inf or NaN into a loss.
    """
    if scheme not in WEIGHT_SCHEMES:
        raise UserError(
            f"unknown class weight scheme {scheme!r}{did_you_mean(scheme, WEIGHT_SCHEMES)}; "
            f"choose from: {', '.join(WEIGHT_SCHEMES)}"
        )
    if not (isinstance(beta, numbers.Real) and 0.0 <= beta < 1.0):
        raise UserError(f"beta={beta!r} must be a number in [0, 1), e.g. beta=0.999")
    counts = _as_counts(counts)
    if counts.sum() <= 0:
        raise UserError("every class count is 0: there are no training labels to weight")
    present = counts > 0
    n = counts[present]
    raw = np.zeros_like(counts)
    if scheme == "none":
        raw[present] = 1.0
    elif scheme == "inverse":
        raw[present] = 1.0 / n
    elif scheme == "sqrt":
        raw[present] = 1.0 / np.sqrt(n)
    else:
        raw[present] = (1.0 - beta) / (1.0 - float(beta) ** n)
    return raw * (counts.sum() / (raw * counts).sum())


def _label_codes(labels: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
    """(class code per sample, count per class), classes numbered by first appearance."""
    if len(labels) == 0:
        raise UserError("no training labels to sample from (the training set is empty)")
    index: dict[Hashable, int] = {}
    codes = np.fromiter((index.setdefault(label, len(index)) for label in labels), dtype=np.int64)
    return codes, np.bincount(codes, minlength=len(index)).astype(np.float64)


def sample_weights(labels: Sequence[Hashable], scheme: str, beta: float = 0.999) -> np.ndarray:
    """Per-sample weights ``balanced_class_weights(...)[label]`` (mean 1) for weighted sampling.

    Under "inverse" every class is drawn equally often; "sqrt" and "effective" sit between that
    and the data's own frequencies. Labels may be class indices or names.
    """
    codes, counts = _label_codes(labels)
    return balanced_class_weights(counts, scheme, beta)[codes]


# --- Samplers ---------------------------------------------------------------------------------

_MASK64 = 2**64 - 1


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch), so any epoch's order can be replayed."""
    sequence = np.random.SeedSequence([int(seed) & _MASK64, int(epoch) & _MASK64])
    state = int(sequence.generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(state)


class WeightedEpochSampler(Sampler[int]):
    """Draws ``num_samples`` indices with replacement, P(i) proportional to ``weights[i]``.

    Unlike torch's ``WeightedRandomSampler`` (which uses the global RNG) each epoch's draw is a
    pure function of (seed, epoch), so call ``set_epoch`` before iterating: a run resumed
    mid-epoch then sees the same order as the run it replaces. Uses ``torch.multinomial``, which
    allows at most 2**24 samples.
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray,
        num_samples: int | None = None,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        array = np.asarray(weights, dtype=np.float64)
        if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
            raise UserError("sampling weights must be a non-empty list of finite numbers")
        if np.any(array < 0) or array.sum() <= 0:
            raise UserError("sampling weights must be >= 0 with at least one above 0")
        self.weights = torch.from_numpy(array)
        self.num_samples = len(array) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise UserError(f"num_samples={num_samples!r} must be at least 1")
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = _epoch_generator(self.seed, self.epoch)
        drawn = torch.multinomial(self.weights, self.num_samples, True, generator=generator)
        return iter(drawn.tolist())


class RepeatFactorSampler(Sampler[int]):
    """LVIS repeat-factor sampling (Gupta et al., CVPR 2019), single-label version.

    Class c with image fraction f_c gets r_c = max(1, sqrt(threshold / f_c)); each image is
    repeated r_{c(i)} times per epoch, the fractional part by seeded stochastic rounding, and the
    repeated list is shuffled. Head images are never dropped (r >= 1 means at least one copy every
    epoch); tail classes are over-sampled. ``threshold=None`` means 1 / number of classes: only
    classes rarer than a uniform share are repeated, so balanced data is left as it is, whatever
    the number of classes (LVIS's 0.001 is for ~1200 multi-label categories).

    The epoch length varies by a few items between epochs (stochastic rounding); ``len`` is exact
    for the current epoch, ``expected_length`` is the average. Order and length are pure functions
    of (seed, epoch): call ``set_epoch`` before iterating.
    """

    def __init__(
        self, labels: Sequence[Hashable], *, threshold: float | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        codes, counts = _label_codes(labels)
        if threshold is None:
            threshold = 1.0 / len(counts)
        if not (isinstance(threshold, numbers.Real) and 0.0 < threshold <= 1.0):
            raise UserError(f"repeat_threshold={threshold!r} must be in (0, 1], e.g. 0.1")
        self.threshold = float(threshold)
        class_factors = np.maximum(1.0, np.sqrt(self.threshold / (counts / counts.sum())))
        self.repeat_factors = torch.from_numpy(class_factors[codes])
        self.seed = seed
        self.epoch = 0
        self._cache: tuple[int, torch.Tensor] | None = None

    @property
    def expected_length(self) -> float:
        return float(self.repeat_factors.sum())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_indices(self) -> torch.Tensor:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        generator = _epoch_generator(self.seed, self.epoch)
        factors = self.repeat_factors
        whole = factors.floor()
        extra = torch.rand(len(factors), generator=generator, dtype=torch.float64) < factors - whole
        repeats = (whole + extra).long().numpy()
        # np.repeat: torch.repeat_interleave with per-item counts is ~100x slower on CPU
        indices = torch.from_numpy(np.repeat(np.arange(len(factors)), repeats))
        indices = indices[torch.randperm(len(indices), generator=generator)]
        self._cache = (self.epoch, indices)
        return indices

    def __len__(self) -> int:
        return len(self._epoch_indices())

    def __iter__(self) -> Iterator[int]:
        return iter(self._epoch_indices().tolist())


# (labels, seed, beta, repeat_threshold) -> sampler, or None for the loader's own shuffling
SamplerFactory = Callable[[Sequence[Hashable], int, float, "float | None"], "Sampler[int] | None"]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("uniform")
def _uniform(
    labels: Sequence[Hashable], seed: int, beta: float, threshold: float | None
) -> Sampler[int] | None:
    return None  # the loader's own shuffling


def _class_balanced(scheme: str) -> SamplerFactory:
    def build(
        labels: Sequence[Hashable], seed: int, beta: float, threshold: float | None
    ) -> Sampler[int] | None:
        return WeightedEpochSampler(sample_weights(labels, scheme, beta), seed=seed)

    return build


SAMPLERS.register("inverse")(_class_balanced("inverse"))
SAMPLERS.register("sqrt")(_class_balanced("sqrt"))
SAMPLERS.register("effective")(_class_balanced("effective"))


@SAMPLERS.register("repeat_factor")
def _repeat_factor(
    labels: Sequence[Hashable], seed: int, beta: float, threshold: float | None
) -> Sampler[int] | None:
    return RepeatFactorSampler(labels, threshold=threshold, seed=seed)


def build_sampler(
    name: str,
    labels: Sequence[Hashable],
    *,
    seed: int,
    beta: float = 0.999,
    repeat_threshold: float | None = None,
) -> Sampler[int] | None:
    """The training sampler called ``name``; None for "uniform" (use ``shuffle=True`` instead).

    "inverse" / "sqrt" / "effective" draw len(labels) samples per epoch with replacement, weighted
    by ``sample_weights``; "repeat_factor" is ``RepeatFactorSampler``.
    """
    return SAMPLERS.get(name)(labels, seed, beta, repeat_threshold)


def holdout_split(
    records: Sequence[Any], val_fraction: float, seed: int
) -> tuple[list[Any], list[Any]]:
    """A random ``val_fraction`` of the records held out (at least one). Every record is one
    image, so no image is in both parts (quality, caption and question data split by image)."""
    _validate_fraction(val_fraction)
    order = np.random.default_rng(seed).permutation(len(records))
    held = set(order[: max(1, round(len(records) * val_fraction))].tolist())
    return ([r for i, r in enumerate(records) if i not in held],
            [r for i, r in enumerate(records) if i in held])  # fmt: skip
