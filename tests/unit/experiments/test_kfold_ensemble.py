"""k-fold bookkeeping, ensemble averaging and test-time augmentation, without training."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from viewfinder.data.sampling import stratified_kfold
from viewfinder.data.sources import ImageRecord
from viewfinder.data.transforms import (
    IDENTITY,
    BatchTransform,
    apply_view,
    tta_images,
    tta_views,
)
from viewfinder.errors import UserError
from viewfinder.experiments.ensemble import (
    _check_member,
    average,
    expand_members,
    parse_weights,
)
from viewfinder.experiments.kfold import combine_out_of_fold
from viewfinder.tasks.classify import ClassifyTask
from viewfinder.training.inference import Predictions, forward_views, mean_probabilities

CLASSES = ["a", "b", "c"]
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _records(count: int) -> list[ImageRecord]:
    labels = [CLASSES[i % 3] if i < count - 2 else "c" for i in range(count)]
    return [
        ImageRecord(f"img{i}", Path(f"/d/{labels[i]}/img{i}.png"), labels[i]) for i in range(count)
    ]


def _prediction(records: list[ImageRecord], seed: int = 0, classes=CLASSES) -> Predictions:
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(len(records), len(classes), generator=generator).softmax(dim=1)
    targets = torch.tensor([classes.index(r.label) for r in records])
    return Predictions(SimpleNamespace(classes=classes), records, probs, targets, None)


# --- k-fold bookkeeping -----------------------------------------------------------------------


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_every_pooled_sample_is_out_of_fold_exactly_once(folds):
    pool = _records(23)
    splits = stratified_kfold([r.label for r in pool], folds, seed=7)
    per_fold = [_prediction([pool[i] for i in val], seed=k) for k, (_, val) in enumerate(splits)]
    combined, fold_of = combine_out_of_fold(per_fold, pool)
    ids = [r.id for r in combined.records]
    assert sorted(ids) == sorted(r.id for r in pool) and len(set(ids)) == len(pool)
    for record, fold, probs in zip(combined.records, fold_of, combined.probabilities, strict=True):
        train_idx, val_idx = splits[fold]
        position = pool.index(record)
        assert position in val_idx and position not in train_idx  # held out by its predictor
        row = per_fold[fold].records.index(record)
        assert torch.equal(probs, per_fold[fold].probabilities[row])
    assert combined.targets.tolist() == [CLASSES.index(r.label) for r in combined.records]


def test_out_of_fold_bookkeeping_catches_twice_and_never():
    pool = _records(9)
    twice = [_prediction(pool[:5]), _prediction(pool[4:])]  # pool[4] in two folds
    with pytest.raises(UserError, match="img4.png is out-of-fold 2 times"):
        combine_out_of_fold(twice, pool)
    never = [_prediction(pool[:4]), _prediction(pool[5:])]  # pool[4] in none
    with pytest.raises(UserError, match="img4.png is out-of-fold 0 times"):
        combine_out_of_fold(never, pool)
    other_classes = [_prediction(pool[:4]), _prediction(pool[4:], classes=["c", "b", "a"])]
    with pytest.raises(UserError, match="fold 1 has classes"):
        combine_out_of_fold(other_classes, pool)


# --- ensembles ----------------------------------------------------------------------------------


def test_average_equals_manual_mean_of_member_probabilities():
    members = [_prediction(_records(6), seed=s).probabilities for s in range(3)]
    manual = (members[0] + members[1] + members[2]) / 3
    assert torch.allclose(average(members), manual, atol=1e-7)
    weighted = average(members, [1.0, 2.0, 0.0])
    assert torch.allclose(weighted, (members[0] + 2 * members[1]) / 3, atol=1e-7)
    assert torch.allclose(weighted.sum(dim=1), torch.ones(6), atol=1e-6)


def test_members_are_aligned_by_image_and_must_share_classes():
    records = _records(5)
    first = _prediction(records, seed=0)
    shuffled = _prediction(records[::-1], seed=1)
    aligned = _check_member(first, Path("r0"), shuffled, Path("r1"))
    assert torch.equal(aligned, shuffled.probabilities.flip(0))
    with pytest.raises(UserError, match="^r2: its classes"):
        _check_member(first, Path("r0"), _prediction(records, classes=["c", "b", "a"]), Path("r2"))
    with pytest.raises(UserError, match="^r3: predicted other images"):
        _check_member(first, Path("r0"), _prediction(records[:4]), Path("r3"))


def test_parse_weights():
    assert parse_weights(None, 2) is None
    assert parse_weights("1,2", 2) == [1.0, 2.0]
    assert parse_weights([0.5, 0], 2) == [0.5, 0.0]
    for bad in ("1", "1,x", "0,0", "-1,2"):
        with pytest.raises(UserError, match="weights"):
            parse_weights(bad, 2)


def test_expand_members_turns_a_fold_set_into_its_folds(tmp_path):
    run = tmp_path / "single"
    run.mkdir()
    (run / "config.yaml").write_text("task: classify\n")
    fold_set = tmp_path / "fs"
    fold_set.mkdir()
    info = {"status": "completed", "fold_runs": ["fold0", "fold1"]}
    (fold_set / "folds.json").write_text(json.dumps(info))
    members = expand_members([run, fold_set])
    assert members == [(run, 0), (fold_set / "fold0", 1), (fold_set / "fold1", 1)]
    (fold_set / "folds.json").write_text(json.dumps({**info, "status": "interrupted"}))
    with pytest.raises(UserError, match="train --resume"):
        expand_members([fold_set])
    with pytest.raises(UserError, match="not a run folder or fold set"):
        expand_members([tmp_path / "nothing"])


# --- test-time augmentation -----------------------------------------------------------------------


def test_tta_views_are_additive():
    assert tta_views("none") == [IDENTITY]
    assert tta_views("hflip") == [IDENTITY, "hflip"]
    assert tta_views("hflip+vflip+scale") == [IDENTITY, "hflip", "vflip", "scale"]
    for bad in ("", "rotate", "none+hflip"):
        with pytest.raises(UserError, match="tta="):
            tta_views(bad)


def test_views_of_a_uint8_batch():
    images = torch.arange(2 * 3 * 16 * 16, dtype=torch.int64).remainder(256).to(torch.uint8)
    images = images.view(2, 3, 16, 16)
    assert torch.equal(apply_view(images, "hflip"), images.flip(-1))
    assert torch.equal(apply_view(images, "vflip"), images.flip(-2))
    crop = apply_view(images, "scale")
    assert crop.shape == (2, 3, 15, 15)  # 0.875 of the area: side x 0.935
    assert torch.equal(crop, images[..., :15, :15])
    transform = BatchTransform(8, MEAN, STD, train=False)
    views = list(tta_images(images, transform, [IDENTITY, "hflip", "scale"]))
    assert [v.shape for v in views] == [(2, 3, 8, 8)] * 3
    assert torch.allclose(views[1], views[0].flip(-1), atol=1e-4)  # flip commutes with resize


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(3)).eval()


def _images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8, generator=generator)


def test_tta_averages_probabilities_over_views():
    model, images = _model(), _images()
    transform = BatchTransform(10, MEAN, STD, train=False)
    views = [IDENTITY, "hflip", "vflip", "scale"]
    with torch.no_grad():
        model(transform(images))
        manual = sum(model(transform(apply_view(images, v))).softmax(dim=1) for v in views) / 4
        averaged = mean_probabilities([model(v) for v in tta_images(images, transform, views)])
    assert torch.allclose(averaged, manual, atol=1e-6)
    assert torch.allclose(averaged.sum(dim=1), torch.ones(4), atol=1e-6)


class _Task:
    """The parts of a classification task that inference uses."""

    def __init__(self) -> None:
        self.transform = BatchTransform(10, MEAN, STD, train=False)
        self.cfg = SimpleNamespace(train=SimpleNamespace(label_smoothing=0.0))

    def transform_batch(self, batch: dict[str, Any], *, train: bool) -> dict[str, Any]:
        return {**batch, "image": self.transform(batch["image"])}

    combine_views = ClassifyTask.combine_views

    def step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = model(batch["image"])
        return {"loss": nn.functional.cross_entropy(logits, batch["target"]), "outputs": logits}


def test_tta_none_is_plain_inference_and_tta_outputs_are_log_mean_probabilities():
    model, task, images = _model(), _Task(), _images()
    batch = {"image": images, "target": torch.tensor([0, 1, 2, 0])}
    numerics = SimpleNamespace(channels_last=False, precision="fp32")
    with torch.no_grad():
        plain = task.step(model, task.transform_batch(batch, train=False))
        none = forward_views(task, model, batch, tta_views("none"), numerics)
        assert torch.equal(none["outputs"], plain["outputs"])
        assert torch.equal(none["loss"], plain["loss"])
        views = tta_views("hflip+scale")
        tta = forward_views(task, model, batch, views, numerics)
        mean = mean_probabilities([model(v) for v in tta_images(images, task.transform, views)])
    assert torch.allclose(tta["outputs"].softmax(dim=1), mean, atol=1e-6)
    log_loss = -mean.log().gather(1, batch["target"].view(-1, 1)).mean()
    assert torch.allclose(tta["loss"], log_loss, atol=1e-5)
