"""``viewfinder report`` on hand-written run folders (no training): finding runs, every task's
section, escaping of user text, self-containment, the size cap and the one-line errors."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.helpers import run_cli
from viewfinder.errors import UserError
from viewfinder.report import build_report, page
from viewfinder.report.runs import find_runs
from viewfinder.report.sections import SECTIONS

EVIL = '<script>alert("x")</script>'
EVIL_ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"


def _png(path: Path, size: tuple[int, int] = (40, 30), noise: bool = False) -> None:
    if noise:
        Image.effect_noise(size, 80).convert("RGB").save(path)
    else:
        Image.new("RGB", size, (200, 60, 60)).save(path)


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _run(root: Path, task: str, name: str, metrics: dict[str, float], **extra: Any) -> Path:
    """A finished run folder as training writes it: summary, config, two epochs of metrics."""
    folder = root / name
    folder.mkdir(parents=True)
    monitor = next(iter(metrics))
    summary = {
        "name": name, "task": task, "model": "cnn", "status": "completed", "epochs": 2,
        "epochs_completed": 2, "best_epoch": 2, "monitor": monitor, "monitor_mode": "max",
        "best_value": metrics[monitor], "metrics": {"loss": 0.5, **metrics}, "train_loss": 0.4,
        "learning_rate": 0.001, "batch_size": 8, "parameters": 1_234_567,
        "data": {"layout": "split-folders", "split_sizes": {"train": 10, "val": 4}},
        **extra,
    }  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.yaml").write_text(f"task: {task}\nname: {name}\nnote: '{EVIL}'\n")
    lines = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "learning_rate": 1e-3 / e,
         "images_per_second": 100.0 + e, **{f"val_{k}": v * e / 2 for k, v in metrics.items()}}
        for e in (1, 2)
    ]  # fmt: skip
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return folder


def _eval(run: Path, metrics: dict[str, Any], split: str = "test") -> Path:
    folder = run / "eval" / split
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _classify(root: Path) -> Path:
    run = _run(root, "classify", "longtail", {"accuracy": 0.75})
    _csv(run / "split.csv", ["split", "id", "path", "label"],
         [["train", f"i{i}", f"/x/{i}.png", c] for i, c in enumerate("aaaaaabbbc")])  # fmt: skip
    out = _eval(run, {"loss": 0.5, "accuracy": 0.75, "head_accuracy": 1.0, "medium_accuracy": 0.5,
                      "tail_accuracy": 0.25})  # fmt: skip
    _csv(
        out / "per_class.csv",
        ["class", "precision", "recall", "f1", "support", "predicted"],
        [["a", 1.0, 1.0, 1.0, 4, 4], ["b", 0.5, 0.5, 0.5, 2, 2], [EVIL, 0.0, 0.25, 0.0, 4, 1]],
    )
    for name in ("confusion_matrix", "confusion_matrix_normalized", "confident_mistakes"):
        _png(out / f"{name}.png")
    return run


def _iqa_caption(root: Path) -> Path:
    run = _run(root, "iqa+caption", "quality", {"mos_score": 0.9, "caption_score": 12.0})
    out = _eval(run, {"loss": 0.4, "mos_score": 0.88, "caption_score": 11.0})
    _csv(out / "error_by_range.csv", ["mos_from", "mos_to", "images", "mean_error",
                                      "mean_abs_error"], [[0.0, 5.0, 3, 0.2, 0.5],
                                                          [5.0, 10.0, 2, -0.4, 1.0]])  # fmt: skip
    _csv(
        out / "captions.csv",
        ["id", "path", "generated", "references"],
        [["q1", "/x/q1.png", EVIL, json.dumps(["a sharp image", "<b>bold</b>"])]],
    )
    _png(out / "quality.png")
    _png(out / "captions.png")
    return run


def _vqa(root: Path) -> Path:
    run = _run(root, "vqa", "questions", {"accuracy": 0.6})
    out = _eval(run, {"loss": 0.9, "accuracy": 0.6, "baseline_accuracy": 0.4})
    _csv(
        out / "per_answer_type.csv",
        ["answer_type", "questions", "accuracy", "vqa_accuracy", "baseline_accuracy"],
        [["yes/no", 5, 0.8, 0.8, 0.6]],
    )
    _csv(
        out / "per_question_type.csv",
        ["question_type", "questions", "accuracy", "vqa_accuracy"],
        [["what color", 4, 0.5, 0.5]],
    )
    _csv(out / "yes_no_confusion.csv", ["reference", "predicted_yes", "predicted_no",
                                        "predicted_other"], [["yes", 3, 1, 0]])  # fmt: skip
    _csv(
        out / "answers.csv",
        ["index", "question", "prediction", "references", "correct", "vqa_accuracy"],
        [[0, f"What is {EVIL}?", "red", '["red"]', 1, 1.0]],
    )
    _png(out / "per_answer_type.png")
    return run


def _fold_set(root: Path) -> Path:
    folder = root / "folded"
    for i in range(2):
        _run(folder, "classify", f"fold{i}", {"accuracy": 0.5 + i / 10})
    per_fold = [{"fold": i, "run": f"fold{i}", "status": "completed", "best_epoch": 2,
                 "best_value": 0.5 + i / 10, "metrics": {"loss": 0.5, "accuracy": 0.5 + i / 10}}
                for i in range(2)]  # fmt: skip
    info = {"kind": "fold_set", "folds": 2, "status": "completed", "fold_runs": ["fold0", "fold1"],
            "per_fold": per_fold, "mean": {"loss": 0.5, "accuracy": 0.55},
            "std": {"loss": 0.0, "accuracy": 0.05},
            "oof": {"file": "oof.csv", "samples": 20, "tta": "none", "accuracy": 0.56}}  # fmt: skip
    (folder / "folds.json").write_text(json.dumps(info))
    summary = {"name": "folded", "kind": "fold_set", "folds": 2, "task": "classify",
               "model": "cnn", "status": "completed", "monitor": "accuracy",
               "monitor_mode": "max", "best_value": 0.55, "metrics": info["mean"]}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _classify(root / "classify")
    _fold_set(root / "classify")
    _iqa_caption(root / "iqa+caption")
    _vqa(root / "vqa")
    unfinished = root / "classify" / "still-training"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("task: classify\n")
    (unfinished / "metrics.jsonl").write_text('{"epoch": 1}\n')
    return root


def test_finds_runs_and_fold_sets_once(project: Path) -> None:
    runs, unfinished = find_runs([project])
    labels = sorted(r.label for r in runs)
    # a fold set is one entry: its fold runs are not listed again
    assert labels == [
        "classify/folded",
        "classify/longtail",
        "iqa+caption/quality",
        "vqa/questions",
    ]
    assert [p.name for p in unfinished] == ["still-training"]
    only, _ = find_runs([project / "classify" / "longtail"])
    assert [r.label for r in only] == ["longtail"]


def test_every_section_rendered_and_self_contained(project: Path, tmp_path: Path) -> None:
    out, count = build_report([project], tmp_path / "r.html")
    text = out.read_text()
    assert count == 4
    for task in ("classify", "iqa-caption", "vqa"):
        for kind in ("task", "comparison", "curves", "runs"):
            assert f'id="{kind}-{task}"' in text
    assert text.count('<details class="run"') == 4
    for marker in (
        "Per class",
        "Long tail",
        "Most confident mistakes",
        "Folds",
        "out of fold",
        "Error by MOS range",
        "Captions",
        "Accuracy per answer type",
        "Accuracy per question type",
        "Yes/no answers",
        "still-training",
    ):
        assert marker in text, marker
    # self-contained: no resource fetched from anywhere, everything inline
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "http://" not in text and "https://" not in text
    assert text.count("data:image/svg+xml;base64,") >= 4  # loss, monitor, lr, img/s
    assert "data:image/png;base64," in text


def test_user_text_is_escaped(project: Path, tmp_path: Path) -> None:
    text = build_report([project], tmp_path / "r.html")[0].read_text()
    assert EVIL not in text and "<b>bold</b>" not in text
    assert EVIL_ESCAPED in text  # class name, caption, question, config


def test_comparison_rows_and_sortable(project: Path, tmp_path: Path) -> None:
    text = build_report([project / "classify"], tmp_path / "r.html")[0].read_text()
    table = text.split('id="comparison-classify"')[1].split("</table>")[0]
    assert 'class="sortable"' in table
    rows = table.split("<tbody>")[1].count("<tr>")
    assert rows == 2  # the long-tail run and the fold set
    assert "fit" in table and "params (M)" in table  # compare's columns


def test_run_without_views_says_how_to_make_them(project: Path, tmp_path: Path) -> None:
    text = build_report([project / "classify" / "folded"], tmp_path / "r.html")[0].read_text()
    assert "No evaluation views yet" in text and "viewfinder evaluate" in text
    assert "--split test" in text


def test_large_views_are_downscaled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    view = tmp_path / "big.png"
    _png(view, (400, 300), noise=True)
    monkeypatch.setattr(page, "MAX_IMAGE_BYTES", 10_000)
    monkeypatch.setattr(page, "MAX_IMAGE_SIDE", 100)
    html = page.image(view, "big")
    assert "downscaled" in html
    assert len(html) < 20_000


def test_registry_covers_every_task() -> None:
    from viewfinder.tasks import TASKS

    assert set(TASKS) <= set(SECTIONS)


def test_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such folder"):
        build_report([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no runs found"):
        build_report([tmp_path / "empty"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        build_report([bad])


def test_cli_prints_path_and_count(project: Path, tmp_path: Path) -> None:
    done = run_cli("report", str(project / "vqa"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "report of 1 run written to report.html" in done.stdout
    assert (tmp_path / "report.html").is_file()
    failed = run_cli("report", str(tmp_path / "nothing"), cwd=tmp_path)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ")
    assert len(failed.stderr.strip().splitlines()) == 1
