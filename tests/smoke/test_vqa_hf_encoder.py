"""The ``vqa`` task with a Hugging Face question encoder (``question_encoder=hf:FOLDER``, a tiny
random BERT the test writes): train -> evaluate -> predict from the run folder alone, after the
encoder's folder is gone; a frozen encoder keeps its pretrained weights, a fine-tuned one learns;
bad names are one line."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import viewfinder
from tests.smoke.conftest import FAST
from tests.unit.models.test_hf_encoder import make_tiny_bert
from tests.unit.models.test_lm import make_tiny_lm
from viewfinder.errors import UserError


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_bert(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    questions = [r["question"] for r in _rows(demo_data.vqa / "train.csv")]
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert", questions)


def test_train_evaluate_predict_with_an_hf_question_encoder(demo_data, runs_dir, tmp_path,
                                                            tiny_bert):  # fmt: skip
    source = shutil.copytree(tiny_bert, tmp_path / "bert")  # deleted after training
    run = viewfinder.train("vqa", data=str(demo_data.vqa), model="cnn", decoder_dim=32,
                           question_encoder=f"hf:{source}", output_dir=str(runs_dir),
                           progress=False, **FAST)  # fmt: skip
    summary = run.summary
    assert summary["status"] == "completed"
    assert f"question encoder hf:{source} (frozen)" in summary["weights"]
    saved = run.path / "question_encoder"
    assert {"config.json", "tokenizer.json"} <= {p.name for p in saved.iterdir()}
    assert not (run.path / "questions_vocab.json").exists()
    assert not (saved / "model.safetensors").exists()  # the weights are in the checkpoint
    best = load_file(str(run.path / "best.safetensors"))
    pretrained = load_file(str(source / "model.safetensors"))
    name = "embeddings.word_embeddings.weight"
    assert torch.equal(best[f"head.question.model.{name}"], pretrained[name])  # frozen
    shutil.rmtree(source)

    run = viewfinder.Run(run.path)  # evaluate and predict from the run folder alone
    results = run.evaluate(split="test")
    assert 0.0 <= results["accuracy"] <= 1.0
    rows = _rows(run.predict(out=runs_dir / "submission.csv"))
    assert [r["ID"] for r in rows] == [r["ID"] for r in _rows(demo_data.vqa / "test.csv")]
    assert all(r["answer"] for r in rows)


def test_generative_with_a_fine_tuned_hf_question_encoder(demo_data, runs_dir, tiny_bert):
    run = viewfinder.train("vqa", data=str(demo_data.vqa / "train.csv"), model="cnn",
                           answerer="generative", decoder="gru", decoder_dim=32,
                           question_encoder=f"hf:{tiny_bert}", freeze_question_encoder=False,
                           learning_rate=1e-2, output_dir=str(runs_dir), progress=False,
                           **{**FAST, "epochs": 1})  # fmt: skip
    assert run.summary["status"] == "completed" and "(fine-tuned)" in run.summary["weights"]
    best = load_file(str(run.path / "last.safetensors"))
    pretrained = load_file(str(tiny_bert / "model.safetensors"))
    name = "embeddings.word_embeddings.weight"
    assert not torch.equal(best[f"head.question.model.{name}"], pretrained[name])


def test_bad_question_encoders_are_one_line(demo_data, tmp_path):
    common = {"data": str(demo_data.vqa / "train.csv"), "model": "cnn", "progress": False,
              "output_dir": str(tmp_path / "runs"), **FAST}  # fmt: skip
    with pytest.raises(UserError, match="did you mean 'lstm'"):
        viewfinder.train("vqa", question_encoder="lstn", **common)
    with pytest.raises(UserError, match="folder not found"):
        viewfinder.train("vqa", question_encoder=f"hf:{tmp_path / 'missing'}", **common)
    gpt2 = make_tiny_lm(tmp_path / "gpt2")  # a causal LM: its tokenizer has no pad token
    with pytest.raises(UserError, match="no pad token") as err:
        viewfinder.train("vqa", question_encoder=f"hf:{gpt2}", **common)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.safetensors"))
