"""An encoder's own tokenizer for questions (``data/hf_tokenizer.py``): special tokens, truncation,
no pad id inside a question, saved and loaded from the run folder alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.unit.models.test_hf_encoder import make_tiny_bert
from tests.unit.models.test_lm import make_tiny_lm
from viewfinder.data.hf_tokenizer import EncoderTokenizer
from viewfinder.errors import UserError


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


def test_encode_adds_the_models_special_tokens_and_truncates(tiny_bert):
    tok = EncoderTokenizer.from_pretrained(str(tiny_bert))
    cls, sep = tok.tok.cls_token_id, tok.tok.sep_token_id
    full = tok.encode("What   color is the circle?", 24)
    assert full.ids[0] == cls and full.ids[-1] == sep and not full.truncated
    assert len(full.ids) == 8  # [CLS] what color is the circle ? [SEP]
    cut = tok.encode("What color is the circle?", 4)
    assert cut.truncated and cut.ids == [cls, *full.ids[1:3], sep]
    assert tok.pad == 0 and len(tok) == len(tok.tok)


def test_a_typed_special_token_never_becomes_padding(tiny_bert):
    tok = EncoderTokenizer.from_pretrained(str(tiny_bert))
    ids = tok.encode("is the [PAD] circle [SEP] red?", 24).ids
    assert tok.pad not in ids and ids.count(tok.tok.sep_token_id) == 1


def test_saved_tokenizer_works_without_its_source(tiny_bert, tmp_path):
    source = shutil.copytree(tiny_bert, tmp_path / "source")
    tok = EncoderTokenizer.from_pretrained(str(source))
    tok.save(tmp_path / "run" / "question_encoder")
    shutil.rmtree(source)
    again = EncoderTokenizer.load(tmp_path / "run" / "question_encoder")
    text = "How many shapes are there?"
    assert again.encode(text, 16) == tok.encode(text, 16) and again.pad == tok.pad


def test_bad_tokenizers_are_one_line(tmp_path):
    with pytest.raises(UserError, match="folder not found"):
        EncoderTokenizer.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="question tokenizer missing"):
        EncoderTokenizer.load(tmp_path)
    gpt2 = make_tiny_lm(tmp_path / "gpt2")  # a causal LM's BPE: no pad token
    with pytest.raises(UserError, match="no pad token"):
        EncoderTokenizer.from_pretrained(str(gpt2))
