"""CLIP end to end with a tiny random-initialised tower (no download): the zero-shot baseline
command and the linear probe on frozen CLIP features."""

from __future__ import annotations

import json

import pytest

import viewfinder
from tests.smoke.conftest import FAST
from viewfinder.cli import app
from viewfinder.errors import UserError

open_clip = pytest.importorskip("open_clip")

TINY = "vf-tiny-smoke"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module", autouse=True)
def tiny_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(path)


def test_zero_shot_run_then_predict(demo_data, runs_dir, tmp_path):
    from typer.testing import CliRunner

    args = [f"data={demo_data.classify}", f"model=clip:{TINY}", "image_size=32",
            f"output_dir={runs_dir}", "num_workers=0"]  # fmt: skip
    result = CliRunner().invoke(app, ["zeroshot", *args])
    assert result.exit_code == 0, result.output
    run = viewfinder.load_run(next((runs_dir / "classify").iterdir()))
    assert run.summary["status"] == "zero-shot"
    assert 0.0 <= run.summary["metrics"]["accuracy"] <= 1.0
    table = viewfinder.compare([run])  # a zero-shot run has no recipe columns: "-" cells
    assert "zero" in table.markdown() or run.summary["name"] in table.markdown()
    out = tmp_path / "sub.csv"
    viewfinder.predict(run, data=str(demo_data.classify / "test"), out=str(out))
    assert out.is_file()


def test_wrong_image_size_is_one_line(demo_data, runs_dir):
    with pytest.raises(UserError, match="takes 32 px images"):
        viewfinder.zero_shot(data=str(demo_data.classify), model=f"clip:{TINY}", image_size=48,
                             output_dir=str(runs_dir))  # fmt: skip


def test_linear_probe_on_frozen_clip_features(demo_data, runs_dir):
    run = viewfinder.train(
        "classify", data=str(demo_data.classify), model=f"clip:{TINY}", freeze_backbone=True,
        output_dir=str(runs_dir), progress=False, **{**FAST, "image_size": 32},
    )  # fmt: skip
    assert run.summary["status"] == "completed"
    assert "backbone frozen" in run.summary["weights"]
