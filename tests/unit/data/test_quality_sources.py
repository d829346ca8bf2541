"""The image-quality CSV reader: columns, repeated rows, comment lists, bad MOS values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import save_image
from viewfinder.data.quality import QualityColumns, parse_range, read_quality
from viewfinder.errors import UserError

HEADER = "img_name,img_path,mos,comments\n"


def _data(root: Path, rows: str, name: str = "train.csv") -> Path:
    for image in ("a", "b", "c"):
        save_image(root / "images" / f"{image}.jpg")
    path = root / name
    path.write_text(HEADER + rows, encoding="utf-8")
    return path


def _error(match: str, *args, **kwargs) -> str:
    with pytest.raises(UserError, match=match) as caught:
        read_quality(*args, **kwargs)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_challenge_csv_one_record_per_image(tmp_path: Path) -> None:
    csv = _data(tmp_path, "a,images/a.jpg,7.5,bright and sharp\n"
                          "b,images/b.jpg,2.0,\"too dark, noisy\"\n"
                          "a,images/a.jpg,7.5,pleasant colours\n"
                          'c,images/c.jpg,5,"[""blurry"", ""flat light""]"\n')  # fmt: skip
    source = read_quality(csv)
    assert [(r.id, r.mos) for r in source.train] == [("a", 7.5), ("b", 2.0), ("c", 5.0)]
    assert source.train[0].comments == ("bright and sharp", "pleasant colours")
    assert source.train[1].comments == ("too dark, noisy",)
    assert source.train[2].comments == ("blurry", "flat light")
    assert source.train[0].path == tmp_path / "images" / "a.jpg"
    assert source.id_column == "img_name"


def test_folder_with_test_csv_without_labels(tmp_path: Path) -> None:
    _data(tmp_path, "a,images/a.jpg,7.5,ok\nb,images/b.jpg,2,dark\n")
    (tmp_path / "test.csv").write_text("img_name,img_path\nc,images/c.jpg\n")
    source = read_quality(tmp_path)
    assert [r.id for r in source.train] == ["a", "b"]
    assert [(r.id, r.mos, r.comments) for r in source.test] == [("c", None, ())]


def test_configured_column_names(tmp_path: Path) -> None:
    save_image(tmp_path / "x.jpg")
    csv = tmp_path / "q.csv"
    csv.write_text("file,quality_score,remarks\nx.jpg,3.5,fine\n")
    cols = QualityColumns(image="file", mos="quality_score", comments="remarks")
    (record,) = read_quality(csv, cols).train
    assert (record.id, record.mos, record.comments) == ("x", 3.5, ("fine",))
    _error("mos_column 'score2' is not a column", csv, QualityColumns(mos="score2"))


@pytest.mark.parametrize(
    ("cell", "match"),
    [("high", "mos='high' is not a number"), ("nan", "not a finite number"),
     ("11", "outside mos_range=0,10"), ("", "empty 'mos'")],
)  # fmt: skip
def test_bad_mos_is_one_line_naming_row_and_column(tmp_path: Path, cell: str, match: str) -> None:
    csv = _data(tmp_path, f"a,images/a.jpg,5,ok\nb,images/b.jpg,{cell},dark\n")
    message = _error(match, csv, mos_range=(0.0, 10.0))
    assert "row 3" in message and str(csv) in message


def test_bad_rows_skipped_and_counted(tmp_path: Path) -> None:
    csv = _data(tmp_path, "a,images/a.jpg,5,ok\nb,images/b.jpg,oops,dark\nc,images/c.jpg,nan,x\n")
    source = read_quality(csv, skip_bad=True)
    assert [r.id for r in source.train] == ["a"]
    assert [where.rsplit(" ", 1)[-1] for where, _ in source.skipped_rows] == ["3", "4"]


def test_one_image_one_mos(tmp_path: Path) -> None:
    csv = _data(tmp_path, "a,images/a.jpg,5,ok\na,images/a.jpg,6,again\n")
    _error("'a' has MOS 6.0 here but 5.0 in row 2", csv)


def test_missing_mos_column_and_bad_range(tmp_path: Path) -> None:
    csv = tmp_path / "q.csv"
    csv.write_text("img_name,img_path\na,a.jpg\n")
    _error("no MOS column", csv)
    with pytest.raises(UserError, match="LOW,HIGH"):
        parse_range("0-10")
    with pytest.raises(UserError, match="below HIGH"):
        parse_range("10,0")
    assert parse_range("0, 10") == (0.0, 10.0) and parse_range(None) is None
