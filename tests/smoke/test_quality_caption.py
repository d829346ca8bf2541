"""``iqa+caption`` end to end (one backbone, two heads) and two runs joined at predict time."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import viewfinder
from tests.helpers import run_cli
from tests.smoke.conftest import FAST
from viewfinder.errors import UserError


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_multitask_train_evaluate_predict_from_the_cli(demo_data, tmp_path):
    """What the README tells a new user: train -> evaluate prints both scores -> predict."""
    args = ["model=cnn", "min_count=1", "decoder=gru", "caption_weight=0.5",
            *(f"{k}={v}" for k, v in FAST.items())]  # fmt: skip
    data = f"data={demo_data.iqa / 'train.csv'}"
    done = run_cli("train", "iqa+caption", data, *args, "output_dir=runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "iqa+caption" / "cnn"
    metrics = viewfinder.load_run(run).summary["metrics"]
    assert {"mos_score", "srcc", "cider_d", "bleu_4", "caption_score"} <= set(metrics)

    shown = run_cli("evaluate", str(run), "--tta", "hflip", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "MOS score" in shown.stdout and "caption score" in shown.stdout
    for name in ("quality.png", "captions.png", "captions.csv", "metrics.json"):
        assert (run / "eval" / "val" / name).stat().st_size > 0

    test_csv = demo_data.iqa / "test.csv"
    done = run_cli("predict", str(run), "--data", str(test_csv), "-o", "sub.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = _rows(tmp_path / "sub.csv")
    assert list(rows[0]) == ["img_name", "mos", "comments"]
    assert [r["img_name"] for r in rows] == [r["img_name"] for r in _rows(test_csv)]
    assert all(0 <= float(r["mos"]) <= 10 and r["comments"].strip() for r in rows)


def test_separate_runs_joined_at_predict(demo_data, runs_dir, tmp_path):
    common = {"data": str(demo_data.iqa), "model": "cnn", "output_dir": str(runs_dir),
              "progress": False, **FAST}  # fmt: skip
    mos_run = viewfinder.train("iqa", **common)
    caption_run = viewfinder.train(
        "caption", min_count=1, decoding="greedy", scorer="python", **common
    )
    rows = _rows(viewfinder.predict([mos_run, caption_run], out=tmp_path / "joined.csv"))
    assert list(rows[0]) == ["img_name", "mos", "comments"]
    test_ids = [r["img_name"] for r in _rows(demo_data.iqa / "test.csv")]
    assert [r["img_name"] for r in rows] == test_ids
    assert all(r["mos"] and r["comments"] for r in rows)
    with pytest.raises(UserError, match="needs an output file"):
        viewfinder.predict([mos_run, caption_run])


def test_tta_decodes_captions_for_the_image_as_it_is_only(demo_data, runs_dir, monkeypatch):
    """Under TTA the MOS is averaged over views, the caption is the unflipped image's: the other
    views get ``tta_view`` > 0 and skip beam/greedy decoding (teacher-forced logits only)."""
    from viewfinder.tasks.quality_caption import QualityCaptionTask
    from viewfinder.training.inference import run_inference

    run = viewfinder.train(
        "iqa+caption", data=str(demo_data.iqa), model="cnn", output_dir=str(runs_dir),
        min_count=1, decoding="greedy", scorer="python", progress=False, **FAST,
    )  # fmt: skip
    _, _, _, plain = run_inference(run.path, run.config, split="val", rows=True, tta="none")

    seen = []
    step = QualityCaptionTask.step

    def spy(self, model, batch):
        out = step(self, model, batch)
        decoded = not out["outputs"]["caption"].is_floating_point()  # ids, not logits
        seen.append((batch.get("tta_view"), decoded))
        return out

    monkeypatch.setattr(QualityCaptionTask, "step", spy)
    _, _, _, rows = run_inference(run.path, run.config, split="val", rows=True, tta="hflip+vflip")
    assert seen and seen[:3] == [(0, True), (1, False), (2, False)]
    assert {view for view, decoded in seen if decoded} == {0}
    assert [r["comments"] for r in rows] == [r["comments"] for r in plain]
    assert [r["mos"] for r in rows] != [r["mos"] for r in plain]  # the MOS did see the flips
