"""VQA readers: CSV, JSONL, the VQA-v2 JSON pair, bad rows, filters, image-level splits, and the
question batches (each image once) with the image-grouped sampler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from viewfinder.data.questions import ImageGroupedSampler, QuestionBatches
from viewfinder.data.vqa import (
    QuestionRecord,
    answer_cell,
    filter_questions,
    read_vqa,
    read_vqa_split,
    split_by_image,
    write_vqa_split,
)
from viewfinder.errors import UserError


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(folder / name)


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("ID,image_id,question,answer\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_csv_finds_images_by_id_and_reads_answer_lists(tmp_path):
    _images(tmp_path / "images", ["a.png", "b.jpg"])
    path = _csv(tmp_path / "train.csv", ['1,a,What color?,Red', '2,b,How many?,"[""2"",""two""]"',
                                         "3,a,What color?,Red"])  # fmt: skip
    source = read_vqa(path)
    assert [r.path.name for r in source.train] == ["a.png", "b.jpg", "a.png"]
    assert source.train[1].answers == ("2", "two")
    assert source.duplicates == 1  # row 3 repeats row 1 under a new ID
    assert source.id_column == "ID" and source.answer_column == "answer"


def test_bad_rows_are_named_or_skipped(tmp_path):
    _images(tmp_path / "images", ["a.png"])
    missing = _csv(tmp_path / "m.csv", ["1,a,Q?,x", "2,zz,Q?,y"])
    with pytest.raises(UserError, match=r"row 3: image_id='zz': no image"):
        read_vqa(missing)
    source = read_vqa(missing, skip_bad=True)
    assert len(source.train) == 1 and "zz" in source.skipped_rows[0][1]
    with pytest.raises(UserError, match=r"row 3: ID='1' repeats .*row 2"):
        read_vqa(_csv(tmp_path / "d.csv", ["1,a,Q?,x", "1,a,Other?,y"]))
    with pytest.raises(UserError, match="empty 'answer'"):
        read_vqa(_csv(tmp_path / "e.csv", ["1,a,Q?,x", "2,a,Other?,"]))
    (tmp_path / "cols.csv").write_text("qid,picture,text\n1,a,x\n")
    with pytest.raises(UserError, match="no question column"):
        read_vqa(tmp_path / "cols.csv")


def test_unlabelled_test_file_and_folder_layout(tmp_path):
    _images(tmp_path / "images", ["a.png", "b.png"])
    _csv(tmp_path / "train.csv", ["1,a,Q?,x", "2,b,Q?,y"])
    (tmp_path / "test.csv").write_text("ID,image_id,question\nT1,a,Why?\n")
    source = read_vqa(tmp_path)
    assert len(source.train) == 2 and source.test[0].answers == ()
    with pytest.raises(UserError, match="T1.*repeats|repeats"):
        (tmp_path / "test.csv").write_text("ID,image_id,question\n1,a,Why?\n")
        read_vqa(tmp_path)


def test_jsonl_and_answer_objects(tmp_path):
    _images(tmp_path, ["a.png"])
    lines = [{"question_id": 7, "image": "a", "question": "Is it?",
              "answers": [{"answer": "yes"}, {"answer": "yes"}, {"answer": "no"}]}]  # fmt: skip
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    record = read_vqa(path).train[0]
    assert record.id == "7" and record.answers == ("yes", "yes", "no")
    assert answer_cell('["a", ""]') == ("a",) and answer_cell("  ") == ()


def _vqa_v2(tmp_path: Path, annotations: list[dict]) -> Path:
    _images(tmp_path, ["COCO_train2014_000000000009.jpg"])
    questions = {"data_subtype": "train2014", "questions": [
        {"image_id": 9, "question": "What is it?", "question_id": 90}]}  # fmt: skip
    path = tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json"
    path.write_text(json.dumps(questions))
    notes = {"annotations": annotations}
    (tmp_path / "v2_mscoco_train2014_annotations.json").write_text(json.dumps(notes))
    return path


def test_vqa_v2_pair_with_coco_file_names(tmp_path):
    answers = [{"answer": "cat"}] * 7 + [{"answer": "dog"}] * 3
    path = _vqa_v2(tmp_path, [{"question_id": 90, "image_id": 9, "answers": answers}])
    record = read_vqa(path).train[0]
    assert record.path.name == "COCO_train2014_000000000009.jpg" and len(record.answers) == 10


def test_vqa_v2_ids_that_disagree(tmp_path):
    path = _vqa_v2(tmp_path, [{"question_id": 91, "image_id": 9, "answers": [{"answer": "x"}]}])
    with pytest.raises(UserError, match="question_id=90 has no annotation"):
        read_vqa(path)


def _record(i: int, image: str, question: str, answer: str) -> QuestionRecord:
    return QuestionRecord(str(i), image, Path(f"/x/{image}.png"), question, (answer,))


def test_filters_and_split_by_image(tmp_path):
    records = [_record(i, f"img{i % 5}", q, a) for i, (q, a) in enumerate(
        [("Is there a star?", "yes"), ("What color is it?", "red"), ("How many?", "two"),
         ("Is the star left?", "no"), ("What color is the sky?", "blue")] * 4)]  # fmt: skip
    assert {r.answers[0] for r in filter_questions(records, answer_type="yes/no")} == {"yes", "no"}
    assert all(r.answers[0] == "two" for r in filter_questions(records, answer_type="number"))
    colour = filter_questions(records, question_type="What color")
    assert len(colour) == 8 and all(r.question.startswith("What color") for r in colour)
    assert len(filter_questions(records, max_questions=3)) == 3
    train, val = split_by_image(records, 0.4, seed=0)
    assert {r.image_id for r in train}.isdisjoint({r.image_id for r in val})
    assert len(train) + len(val) == len(records) and len({r.image_id for r in val}) == 2
    write_vqa_split(tmp_path / "split.csv", {"train": train, "val": val, "test": []})
    assert read_vqa_split(tmp_path / "split.csv")["val"] == val


class _Images:
    """A stand-in image dataset: image i is filled with i; image 2 is unreadable."""

    epoch = 0

    def __getitem__(self, i: int):
        if i == 2:
            return None
        return {"image": torch.full((3, 2, 2), float(i)), "target": -1, "index": i}


def test_question_batches_hold_each_image_once():
    records = [_record(i, f"img{i // 2}", f"q {i}", "a") for i in range(6)]
    batches = QuestionBatches(
        _Images(), records, [i // 2 for i in range(6)], question_ids=lambda q: [1, 5, 2],
        question_pad=0, question_length=8, answers=[["a"]] * 6,
        soft_target=lambda answers: {0: 1.0}, num_answers=2,
    )  # fmt: skip
    batch = batches.__getitems__([0, 1, 2, 3, 4, 5])
    assert batch["image"].shape[0] == 2  # images 0 and 1; image 2 unreadable
    assert batch["index"].tolist() == [0, 1, 2, 3] and batch["skipped"] == 2
    assert torch.equal(batch["image"][batch["image_of"]][:, 0, 0, 0], torch.tensor([0, 0, 1, 1.0]))
    assert batch["question"].shape == (4, 8) and batch["answer_target"][:, 0].tolist() == [1.0] * 4


def _flip_batches(base, records, image_of, **kw) -> QuestionBatches:
    answers = [list(r.answers) for r in records]
    vocab = {"left": 0, "right": 1}
    return QuestionBatches(
        base, records, image_of, question_ids=lambda q: [len(q)] + [ord(c) for c in q[8:10]],
        question_pad=0, question_length=8, answers=answers,
        soft_target=lambda a: {vocab[a[0]]: 1.0} if a and a[0] in vocab else {}, num_answers=2,
        answer_ids=lambda a: [len(a)], **kw,
    )  # fmt: skip


def test_a_flipped_image_is_asked_about_with_left_and_right_swapped():
    """Training flips: half the images per epoch, drawn per (seed, epoch, image); each question
    about a flipped image reads "left" for "right" and its answer too, so the label stays true."""
    records = [_record(i, f"img{i}", "Is it on the left side?" if i % 2 else "Where is it?",
                       "yes" if i % 2 else "left") for i in range(6)]  # fmt: skip

    class Images:  # image i: a 2x2 plane whose left column is i, right column 100 + i
        epoch = 0

        def __getitem__(self, i):
            image = torch.tensor([[i, 100 + i], [i, 100 + i]], dtype=torch.uint8).expand(3, 2, 2)
            return {"image": image.clone(), "target": -1, "index": i}

    batches = _flip_batches(Images(), records, range(6), mirror=True, seed=4)
    flipped_any = set()
    for epoch in range(4):
        batches.epoch = epoch
        batch = batches.__getitems__(list(range(6)))
        again = batches.__getitems__(list(range(6)))
        assert torch.equal(batch["image"], again["image"])  # a pure function of the draw
        flipped = (batch["image"][:, 0, 0, 0] >= 100).tolist()
        flipped_any.update(i for i, f in enumerate(flipped) if f)
        for i, f in enumerate(flipped):
            question = records[i].question.replace("left", "right") if f else records[i].question
            assert batch["question"][i, 0] == len(question)  # the mirrored text was encoded
            want = ("right" if f else "left") if i % 2 == 0 else "yes"
            assert batch["answers"][i] == [want]
            assert batch["answer_target"][i].tolist() == (
                [0.0, 0.0] if want == "yes" else [float(want == "left"), float(want == "right")]
            )
            assert batch["tokens"][i, 0] == len(want)  # the generator's target too
    assert flipped_any == set(range(6))  # every image is flipped in some epoch ...
    plain = _flip_batches(Images(), records, range(6)).__getitems__(list(range(6)))
    assert (plain["image"][:, 0, 0, 0] < 100).all()  # ... and never without mirror
    assert plain["answers"] == [list(r.answers) for r in records]


def test_cached_features_say_which_view_was_drawn_and_questions_follow_it():
    from viewfinder.training.features import FeatureDataset

    features = np.stack([np.zeros((4, 2)), np.ones((4, 2))], axis=1)[:, :, None]  # view 1: ones
    records = [_record(i, f"img{i}", "Where is it?", "left") for i in range(4)]
    for train in (True, False):
        base = FeatureDataset(features.astype(np.float32), None, train=train, seed=2)
        batches = _flip_batches(base, records, range(4))
        seen = set()
        for epoch in range(6):
            batches.epoch = epoch
            batch = batches.__getitems__(list(range(4)))
            views = batch["features"][:, 0].flatten(1)[:, 0].tolist()  # the first view held
            for view, answers in zip(views, batch["answers"], strict=True):
                assert answers == (["right"] if view == 1.0 else ["left"])
                seen.add(view)
        # training draws either view; evaluation holds every view, the original first
        assert seen == ({0.0, 1.0} if train else {0.0})


def test_image_grouped_sampler_keeps_an_images_questions_together():
    image_of = [0, 1, 0, 2, 1, 2, 0]
    sampler = ImageGroupedSampler(image_of, seed=3)
    sampler.set_epoch(1)
    order = list(sampler)
    assert sorted(order) == list(range(7))
    images = [image_of[q] for q in order]
    assert all(images.index(i) + images.count(i) - 1 == max(
        k for k, x in enumerate(images) if x == i) for i in set(images))  # fmt: skip
    assert order == list(sampler)  # a pure function of (seed, epoch)


@pytest.mark.parametrize("frozen", [True, False])
def test_questions_group_by_image_only_end_to_end(frozen):
    """End to end the backbone runs once per image of a batch, so an image's questions travel
    together; on cached grids that saves little, and questions are shuffled freely."""
    from types import SimpleNamespace

    from viewfinder.config import build_config
    from viewfinder.tasks.vqa import VQATask

    cfg = build_config("vqa", overrides={"model": "cnn", "freeze_backbone": frozen})
    sampler = VQATask.train_sampler(SimpleNamespace(cfg=cfg), SimpleNamespace(image_of=[0, 0, 1]))
    assert isinstance(sampler, ImageGroupedSampler) != frozen


def test_split_file_keeps_absolute_image_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = QuestionRecord("q1", "img", Path("data/images/img.png"), "What?", ("red",))
    write_vqa_split(tmp_path / "split.csv", {"train": [record], "val": [], "test": []})
    monkeypatch.chdir(tmp_path.parent)  # evaluate from another folder finds the image
    (read,) = read_vqa_split(tmp_path / "split.csv")["train"]
    assert read.path == tmp_path / "data" / "images" / "img.png"


def test_vqa_flips_by_default_with_the_flipped_view_cached():
    from viewfinder.config import build_config

    cfg = build_config("vqa", overrides={"model": "cnn"})
    assert cfg.data.augment == "flip" and cfg.data.hflip and cfg.model.feature_flip
    off = build_config("vqa", overrides={"model": "cnn", "hflip": False, "feature_flip": False})
    assert not off.data.hflip and not off.model.feature_flip
