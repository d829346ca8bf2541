"""Bad input, interruption and resume, multi-process training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import viewfinder
from tests.helpers import BAD_IMAGE_KEYS, GOOD_IMAGE_KEYS, make_bad_image_corpus
from tests.smoke.conftest import FAST
from viewfinder.errors import BadImageError, UserError
from viewfinder.training.callbacks import StopAfterSteps


def _dataset_with_bad_files(demo_data, tmp_path: Path) -> tuple[Path, int]:
    """A copy of the class-folder demo with the bad-input corpus dropped into train/circle."""
    root = tmp_path / "data"
    shutil.copytree(demo_data.classify, root)
    corpus = make_bad_image_corpus(tmp_path / "corpus")
    target = root / "train" / "circle"
    bad = 0
    for key, path in corpus.items():
        if key in BAD_IMAGE_KEYS and key != "missing":
            shutil.copy(path, target / f"bad_{key}{path.suffix}")
            bad += 1
        elif key in GOOD_IMAGE_KEYS:
            shutil.copy(path, target / f"odd_{key}{path.suffix}")
    return root, bad


def test_bad_images_error_names_the_file(demo_data, tmp_path):
    root, _ = _dataset_with_bad_files(demo_data, tmp_path)
    with pytest.raises(BadImageError) as err:
        viewfinder.train("classify", data=str(root), model="cnn", output_dir=str(tmp_path / "r"),
                         progress=False, **FAST)  # fmt: skip
    message = str(err.value)
    assert "bad_" in message and "\n" not in message and "on_bad_image=skip" in message


def test_bad_images_skipped_and_counted(demo_data, tmp_path):
    root, bad = _dataset_with_bad_files(demo_data, tmp_path)
    run = viewfinder.train("classify", data=str(root), model="cnn", on_bad_image="skip",
                           output_dir=str(tmp_path / "r"), progress=False, **FAST)  # fmt: skip
    assert run.summary["status"] == "completed"
    assert run.summary["skipped_images"] == bad
    assert len((run.path / "skipped_images.csv").read_text().splitlines()) == bad + 1


def test_missing_csv_column_is_one_line(demo_data, tmp_path):
    with pytest.raises(UserError, match="label_column"):
        viewfinder.train(
            "classify",
            data=str(demo_data.classify_csv / "train.csv"),
            label_column="klass",
            output_dir=str(tmp_path / "r"),
            progress=False,
        )


def _final_weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run.path / "last.safetensors"))


def _metric_values(run) -> list[dict]:
    drop = {"epoch_time", "eval_time", "images_per_second", "peak_rss_mb"}
    return [{k: v for k, v in m.items() if k not in drop} for m in run.metrics]


def test_resume_after_interruption_matches_uninterrupted(demo_data, tmp_path):
    settings = dict(
        data=str(demo_data.classify), model="resnet18", deterministic=True, augment="light",
        progress=False, **{**FAST, "epochs": 3, "max_steps_per_epoch": 3},
    )  # fmt: skip
    full = viewfinder.train("classify", output_dir=str(tmp_path / "a"), **settings)
    cut = viewfinder.train(
        "classify", output_dir=str(tmp_path / "b"), callbacks=[StopAfterSteps(5)], **settings
    )
    assert cut.summary["status"] == "interrupted"
    assert cut.summary["epochs_completed"] == 1  # stopped mid-way through epoch 2
    resumed = viewfinder.resume(cut, progress=False)
    assert resumed.summary["status"] == "completed"
    assert _metric_values(resumed) == _metric_values(full)
    a, b = _final_weights(full), _final_weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_extends_epochs(demo_data, tmp_path):
    run = viewfinder.train("classify", data=str(demo_data.classify), model="cnn",
                           output_dir=str(tmp_path), progress=False, **FAST)  # fmt: skip
    more = viewfinder.resume(run, epochs=3, progress=False)
    assert [m["epoch"] for m in more.metrics] == [1, 2, 3]
    with pytest.raises(UserError, match="model"):
        viewfinder.resume(run, model="resnet18", progress=False)


@pytest.mark.slow
def test_two_process_training_with_accelerate(demo_data, tmp_path):
    """Multi-GPU/multi-node goes through `accelerate launch`; here 2 CPU processes (gloo)."""
    launcher = Path(sys.executable).with_name("accelerate")
    fast = [f"{k}={v}" for k, v in FAST.items()]
    cmd = [
        str(launcher), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "viewfinder", "train",
        "classify", f"data={demo_data.classify}", "model=cnn", "-q", *fast,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "classify" / "cnn"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert not (tmp_path / "runs" / "classify" / "cnn-2").exists()  # one run folder, not two
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
