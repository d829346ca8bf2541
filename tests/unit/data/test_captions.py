"""Caption readers (image_id CSV, the challenge CSV, COCO JSON), bad rows, and text batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import save_image
from viewfinder.data.captions import read_caption_csv, read_captions, read_coco_json
from viewfinder.data.quality import QualityColumns
from viewfinder.data.text import TextBatches, Vocabulary
from viewfinder.errors import UserError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_image_id_csv_finds_images_by_id_with_any_extension(tmp_path):
    save_image(tmp_path / "images" / "a.png")
    save_image(tmp_path / "images" / "b.jpg")
    csv = _write(
        tmp_path / "caps" / "train.csv",
        'image_id,caption\na,a red square\na,red block\nb,"[""x"", ""y""]"\n',
    )
    records, skipped, cols = read_caption_csv(csv, images=str(tmp_path / "images"))
    assert [r.id for r in records] == ["a", "b"] and not skipped
    assert records[0].comments == ("a red square", "red block")
    assert records[1].comments == ("x", "y") and records[1].path.suffix == ".jpg"
    assert cols.comments == "caption"
    # default search: the CSV's folder, its images/ folder, then ../images
    assert [r.path for r in read_caption_csv(csv)[0]] == [r.path for r in records]


def test_challenge_csv_comments_are_captions(tmp_path):
    save_image(tmp_path / "imgs" / "p1.jpg")
    csv = _write(
        tmp_path / "train.csv",
        "img_name,img_path,mos,comments\n"
        "p1,imgs/p1.jpg,5.5,too dark\np1,imgs/p1.jpg,5.5,noisy sky\n",
    )
    source, column = read_captions(csv)
    assert column == "comments" and source.id_column == "img_name"
    assert source.train[0].comments == ("too dark", "noisy sky")


def test_missing_image_is_one_line_or_skipped(tmp_path):
    save_image(tmp_path / "images" / "a.png")
    csv = _write(tmp_path / "train.csv", "image_id,caption\na,fine\nghost,no such image\n")
    with pytest.raises(UserError, match=r"row 3: image_id='ghost': no image of that name"):
        read_caption_csv(csv)
    records, skipped, _ = read_caption_csv(csv, skip_bad=True)
    assert [r.id for r in records] == ["a"] and len(skipped) == 1
    bad_path = _write(tmp_path / "p.csv", "img_path,caption\nnope.png,x\n")
    with pytest.raises(UserError, match=r"row 2: img_path='nope.png': image not found"):
        read_caption_csv(bad_path)


def test_non_utf8_and_missing_columns_are_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes("image_id,caption\na,caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_caption_csv(bad)
    odd = _write(tmp_path / "odd.csv", "foo,bar\n1,2\n")
    with pytest.raises(UserError, match="no image or image id column"):
        read_caption_csv(odd)
    with pytest.raises(UserError, match="comments_column 'text'"):
        read_caption_csv(
            _write(tmp_path / "c.csv", "image_id,caption\na,b\n"), QualityColumns(comments="text")
        )


def test_coco_json(tmp_path):
    save_image(tmp_path / "images" / "000001.jpg")
    save_image(tmp_path / "images" / "000002.jpg")
    data = {"images": [{"id": 1, "file_name": "000001.jpg"}, {"id": 2, "file_name": "000002.jpg"}],
            "annotations": [{"image_id": 1, "caption": "a cat"}, {"image_id": 1, "caption": "cat"},
                            {"image_id": 2, "caption": "a dog"}]}  # fmt: skip
    path = _write(tmp_path / "captions.json", json.dumps(data))
    records, skipped = read_coco_json(path)
    assert [(r.id, r.comments) for r in records] == [("1", ("a cat", "cat")), ("2", ("a dog",))]
    data["annotations"].append({"image_id": 9, "caption": "orphan"})
    _write(path, json.dumps(data))
    with pytest.raises(UserError, match=r"annotations\[3\]: image_id='9' is not in images"):
        read_coco_json(path)
    assert len(read_coco_json(path, skip_bad=True)[1]) == 1
    _write(path, json.dumps({"images": []}))
    with pytest.raises(UserError, match="not COCO captions JSON"):
        read_coco_json(path)


def test_folder_with_splits(tmp_path):
    for name in ("a", "b", "c"):
        save_image(tmp_path / "images" / f"{name}.png")
    _write(tmp_path / "train.csv", "image_id,caption\na,one\nb,two\n")
    _write(tmp_path / "test.csv", "image_id\nc\n")
    source, _ = read_captions(tmp_path)
    assert [r.id for r in source.train] == ["a", "b"] and [r.id for r in source.test] == ["c"]
    assert source.test[0].comments == ()


class _Images:
    """A stand-in image dataset: items carry only their index."""

    epoch = 0
    targets = None

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> dict:
        import torch

        return {"image": torch.zeros(1), "target": 0, "index": index}


def test_text_batches_pad_sample_and_keep_references():
    vocab = Vocabulary.build(["a red square", "a blue circle", "big"])
    texts = [("a red square", "a blue circle"), ("big",), ()]
    encode = lambda t: vocab.encode(t, 10).ids  # noqa: E731
    train = TextBatches(_Images(), [None] * 3, texts, encode, vocab.pad, max_length=10,
                        train=True, seed=1)  # fmt: skip
    batch = train.__getitems__([0, 1, 2])
    assert batch["tokens"].shape == (3, 8)  # padded to a multiple of 8 (fewer kernel shapes)
    assert batch["references"] == [list(t) for t in texts]
    assert vocab.decode(batch["tokens"][1]) == "big"
    assert batch["tokens"][2, :2].tolist() == [vocab.bos, vocab.eos]  # unlabelled: empty text
    seen = set()
    for epoch in range(8):  # training draws one of an image's captions per epoch
        train.epoch = epoch
        seen.add(vocab.decode(train.__getitems__([0])["tokens"][0]))
    assert seen == {"a red square", "a blue circle"}
    val = TextBatches(_Images(), [None] * 3, texts, encode, vocab.pad, max_length=10, train=False)
    assert vocab.decode(val.__getitems__([0])["tokens"][0]) == "a red square"
    assert val.targets is None  # one image has no caption: not scoreable as a whole


def test_text_batches_mirror_the_caption_of_a_flipped_image():
    import torch

    class Images(_Images):  # image i: left column 0, right column 1
        def __getitem__(self, index: int) -> dict:
            return {"image": torch.tensor([[0, 1]], dtype=torch.uint8).expand(3, 1, 2).clone(),
                    "target": 0, "index": index}  # fmt: skip

    vocab = Vocabulary.build(["a star on the left", "a star on the right"])
    texts = [("a star on the left",)] * 3
    encode = lambda t: vocab.encode(t, 10).ids  # noqa: E731
    batches = TextBatches(Images(), [None] * 3, texts, encode, vocab.pad, max_length=10,
                          train=True, seed=0, mirror=True)  # fmt: skip
    flips = 0
    for epoch in range(6):
        batches.epoch = epoch
        batch = batches.__getitems__([0, 1, 2])
        for row in range(3):
            flipped = int(batch["image"][row, 0, 0, 0]) == 1
            flips += flipped
            side = "right" if flipped else "left"
            assert vocab.decode(batch["tokens"][row]) == f"a star on the {side}"
            assert batch["references"][row] == ["a star on the left"]  # scored as written
    assert 0 < flips < 18


@pytest.mark.parametrize(
    ("task", "mirrors"),
    [("vqa", True), ("caption", True), ("iqa+caption", True), ("classify", False)],
)
def test_text_tasks_flip_in_their_batches_and_not_in_the_transform(task, mirrors, tmp_path):
    """Flipping where the texts are lets them follow; the batch transform then flips nothing."""
    from viewfinder.config import build_config
    from viewfinder.tasks import get_task_class

    cfg = build_config(task, overrides={"model": "cnn", "augment": "flip"})
    runner = get_task_class(task)(cfg, tmp_path)
    runner._norm = ((0.5,) * 3, (0.5,) * 3)
    assert runner._transform(train=True).hflip is not mirrors
    assert runner.mirror(train=True) is mirrors
    assert not runner.mirror(train=False) and not runner.mirror(train=True, data="other.csv")
    runner._frozen = object()  # frozen: the feature dataset draws the flipped view instead
    assert not runner.mirror(train=True)
