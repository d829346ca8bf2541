"""The ``caption`` task with a Hugging Face causal-LM decoder (``decoder=hf:FOLDER``, a tiny
random GPT-2 the test writes): train -> evaluate -> predict, decoding with the run's BPE."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

import viewfinder
from tests.smoke.conftest import FAST
from tests.unit.models.test_lm import make_tiny_lm
from viewfinder.data.bpe import BPETokenizer
from viewfinder.errors import UserError


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_lm(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [r["caption"] for r in _rows(demo_data.caption / "train.csv")]
    return make_tiny_lm(tmp_path_factory.mktemp("lm") / "tiny-gpt2", texts, vocab=400)


def test_train_evaluate_predict_with_an_lm_decoder(demo_data, runs_dir, tiny_lm, tmp_path):
    lm = tmp_path / "lm"
    shutil.copytree(tiny_lm, lm)
    run = viewfinder.train("caption", data=str(demo_data.caption), model="cnn",
                           decoder=f"hf:{lm}", scorer="python", beam_size=2,
                           output_dir=str(runs_dir), progress=False, **FAST)  # fmt: skip
    assert (run.path / "decoder" / "config.json").is_file()
    shutil.rmtree(lm)  # evaluate and predict rebuild the LM from the run folder alone
    summary = run.summary
    assert summary["status"] == "completed" and summary["monitor"] == "cider_d"
    state = json.loads((run.path / "caption.json").read_text())
    assert state["tokenizer"] == "bpe" and not (run.path / "vocab.json").exists()
    tok = BPETokenizer.load(run.path / "bpe.json")
    assert summary["data"]["vocabulary"] == len(tok)

    results = run.evaluate(split="test")
    assert results["cider_d"] >= 0.0 and results["java_free"] == 1.0
    generated = _rows(run.path / "eval" / "test" / "captions.csv")
    assert len(generated) == len({r["image_id"] for r in _rows(demo_data.caption / "test.csv")})

    rows = _rows(run.predict(out=runs_dir / "submission.csv"))
    assert list(rows[0]) == ["image_id", "caption"]
    assert len(rows) == len(generated) and all(isinstance(r["caption"], str) for r in rows)


def test_tokenizer_must_fit_the_decoder(demo_data, tmp_path, tiny_lm):
    common = {"data": str(demo_data.caption), "model": "cnn", "scorer": "python",
              "output_dir": str(tmp_path / "runs"), "progress": False, **FAST}  # fmt: skip
    with pytest.raises(UserError, match="tokenizer=word does not fit"):
        viewfinder.train("caption", decoder=f"hf:{tiny_lm}", tokenizer="word", **common)
    with pytest.raises(UserError, match="tokenizer=bpe needs a Hugging Face LM"):
        viewfinder.train("caption", decoder="gru", tokenizer="bpe", **common)
    with pytest.raises(UserError, match="folder not found|no tokenizer|could not be loaded"):
        viewfinder.train("caption", decoder=f"hf:{tmp_path / 'missing'}", **common)
