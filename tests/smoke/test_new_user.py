"""Defects a new user met from a fresh clone (issue 15), each pinned end to end through the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from tests.helpers import BAD_IMAGE_KEYS, make_bad_image_corpus, run_cli
from tests.smoke.conftest import FAST

FAST_ARGS = [f"{k}={v}" for k, v in FAST.items()]


_cli = run_cli


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_data_dot_inside_the_data_folder_with_old_runs(demo_data, tmp_path):
    """`cd fruits && viewfinder train classify data=.`: the run folder it makes, a cache folder
    and an earlier run's folder (written before output folders were marked) are not classes."""
    root = tmp_path / "fruits"
    shutil.copytree(demo_data.classify / "train", root)
    old_run = root / "old" / "classify" / "cnn"
    old_run.mkdir(parents=True)
    (old_run / "config.yaml").write_text("task: classify\n")
    (old_run / "summary.json").write_text("{}")
    shutil.copy(next((root / "circle").iterdir()), old_run / "confusion_matrix.png")
    args = ["train", "classify", "data=.", "model=cnn", "-q", "cache_dir=cache", *FAST_ARGS]
    for name in ("cnn", "cnn-2"):  # the second run reads a folder holding the first one
        done = _cli(*args, cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr
        labels = (root / "runs" / "classify" / name / "labels.json").read_text()
        assert all(word not in labels for word in ("runs", "cache", "old")), labels


def test_skipped_images_are_announced_by_train_evaluate_and_predict(demo_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(demo_data.classify, root)
    corpus = make_bad_image_corpus(tmp_path / "corpus")
    bad = [k for k in BAD_IMAGE_KEYS if k != "missing"]
    for key in bad:
        for split in ("train", "test"):
            shutil.copy(corpus[key], root / split / "circle" / f"bad_{key}{corpus[key].suffix}")
    total = sum(1 for p in root.rglob("*") if p.is_file())
    done = _cli("train", "classify", f"data={root}", "model=cnn", "on_bad_image=skip",
                *FAST_ARGS, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = f"skipped {2 * len(bad)} of {total} images that could not be read"
    assert done.stdout.count(line) == 2, done.stdout  # when the run starts, and in its last line
    run = tmp_path / "runs" / "classify" / "cnn"
    assert "list: runs/classify/cnn/skipped_images.csv" in done.stdout.replace("\n", "")

    test_images = sum(1 for p in (root / "test").rglob("*") if p.is_file())
    done = _cli("evaluate", str(run), "--data", str(root / "test"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"skipped {len(bad)} of {test_images} images" in done.stderr
    assert len(_rows(run / "eval" / "custom" / "skipped_images.csv")) == len(bad)

    done = _cli("predict", str(run), "--data", str(root / "test"), "-o", "sub.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"skipped {len(bad)} of {test_images} images" in done.stderr
    assert "their rows are missing" in done.stderr
    skipped = _rows(tmp_path / "sub.skipped.csv")
    assert sorted(Path(r["path"]).stem for r in skipped) == sorted(f"bad_{k}" for k in bad)
    assert len(_rows(tmp_path / "sub.csv")) == test_images - len(bad)


def test_eval_every_validates_every_nth_and_the_last_epoch(demo_data, tmp_path):
    import viewfinder

    fast = {**FAST, "epochs": 5, "eval_every": 2, "output_dir": str(tmp_path / "r")}
    run = viewfinder.train("classify", data=str(demo_data.classify), model="cnn",
                           eval_batch_size=5, progress=False, **fast)  # fmt: skip
    assert [m["epoch"] for m in run.metrics] == [1, 2, 3, 4, 5]
    assert [m["epoch"] for m in run.metrics if "val_accuracy" in m] == [2, 4, 5]
    assert all("train_loss" in m and "learning_rate" in m for m in run.metrics)
    assert run.summary["best_epoch"] in (2, 4, 5)
    # early stopping counts validations and can only stop on a validated epoch
    stopped = viewfinder.train("classify", data=str(demo_data.classify), model="cnn",
                               early_stopping_patience=1, progress=False, **fast)  # fmt: skip
    assert "val_loss" in stopped.metrics[-1]
    assert {m["epoch"] for m in stopped.metrics if "val_loss" in m} <= {2, 4, 5}


def test_eval_batch_size_sets_the_validation_loader(demo_data, tmp_path):
    from viewfinder.config import build_config
    from viewfinder.training.loop import eval_batch_size

    cfg = build_config("classify", overrides={"batch_size": 8})
    assert eval_batch_size(cfg) == 8  # CPU: the training batch (larger measured no faster)
    assert eval_batch_size(cfg.with_overrides({"eval_batch_size": 64})) == 64


def test_demo_table_explains_every_weak_model(tmp_path, capsys):
    """The demo's comparison says why a model did not learn, in the table and in words."""
    from viewfinder.demo import run_demo

    table = run_demo(tmp_path / "demo", epochs=1, progress=False, models=("cnn", "resnet18"),
                     count=120, size=48)  # fmt: skip
    out = capsys.readouterr().out
    assert "| train loss | fit |" in (tmp_path / "demo" / "comparison.md").read_text()
    for row in table.rows:
        assert row["fit"], row
        if not row["fit"].startswith("ok"):
            assert f"{row['run']}: {row['fit']}" in out.replace("\n", " ")
    assert (tmp_path / "demo" / "submission.csv").is_file()
    # the quality part: both challenge scores, the constant-caption floor, the submission
    flat = " ".join(out.split())  # the console wraps long lines at spaces
    assert "test MOS score" in flat and "the best single caption's" in flat
    header = (tmp_path / "demo" / "quality_submission.csv").read_text().splitlines()[0]
    assert header == "img_name,mos,comments"
    # the questions part: accuracy per answer type beside the majority baseline, the submission
    assert "majority baseline" in out and "yes/no" in out and "test accuracy" in flat
    vqa = (tmp_path / "demo" / "vqa_submission.csv").read_text().splitlines()
    assert vqa[0] == "ID,answer" and len(vqa) > 1
    summary = json.loads((tmp_path / "demo" / "runs" / "vqa" / "questions" / "summary.json")
                         .read_text())  # fmt: skip
    assert "backbone frozen" in summary["weights"] and "tensors from" in summary["weights"]


def test_every_fit_verdict_is_explained():
    from viewfinder.demo import explain_fit

    assert "memorise" in explain_fit("overfits (1.6x val/train loss); still improving")
    assert "near chance" in explain_fit("underfits; still improving")
    assert explain_fit("ok; still improving") is None and explain_fit("") is None
