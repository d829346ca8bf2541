"""VQA answers: the official normalisation, answer and question types, the answer vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest

from viewfinder.data.answers import (
    AnswerVocab,
    answer_type,
    most_common_answer,
    normalize_answer,
    question_type,
    top_k_coverage,
)
from viewfinder.errors import UserError


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Two", "2"),  # number words zero..ten become digits
        ("ten", "10"),
        ("eleven", "eleven"),
        ("none", "0"),  # sic: the official map sends "none" to 0
        ("the dog", "dog"),  # articles a/an/the dropped
        ("A Red Ball!", "red ball"),  # "!" touches no space: replaced by one, then collapsed
        ("a", ""),
        ("yes.", "yes"),  # a period not followed by a digit goes
        ("3.", "3"),
        ("e.g.", "eg"),
        ("3.5", "3.5"),  # a decimal point stays
        ("isnt", "isn't"),  # missing apostrophes restored
        ("dont", "don't"),
        ("Im", "im"),  # the table's capitalised keys never match after lower-casing
        ("dog's", "dog's"),  # the apostrophe is not punctuation here
        ("It's", "it's"),
        ("red, white", "red white"),  # a mark touching a space is deleted
        ("red,white", "red white"),  # else replaced by a space
        ("t-shirt", "t shirt"),
        ("1,000", "1000"),  # a digit-comma-digit deletes every mark
        ("(yes)", "yes"),
        ("10:30", "10:30"),  # the colon is not in the list
        ("  yes\n", "yes"),
        ("two\tdogs", "2 dogs"),
        ("Yes", "yes"),
    ],
)
def test_official_normalisation(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def test_normalisation_is_idempotent_on_typical_answers() -> None:
    for raw in ("Two", "the dog", "yes.", "isnt", "3.5", "1,000", "t-shirt", "dog's"):
        once = normalize_answer(raw)
        assert normalize_answer(once) == once


@pytest.mark.parametrize(
    ("answer", "kind"),
    [("yes", "yes/no"), ("No.", "yes/no"), ("2", "number"), ("two", "number"),
     ("3.5", "number"), ("1,000", "number"), ("red", "other"), ("2 dogs", "other"),
     ("10:30", "other"), ("", "other")],
)  # fmt: skip
def test_answer_types(answer: str, kind: str) -> None:
    assert answer_type(answer) == kind


def test_question_types() -> None:
    assert question_type("What color is the star?") == "what color"
    assert question_type("How many shapes are there?") == "how many"
    assert question_type("Is there a circle?") == "is there"
    assert question_type("What's this?") == "what's this"
    assert question_type("What color is the star?", words=4) == "what color is the"
    assert question_type("Why?", words=3) == "why"
    assert question_type("?") == ""
    with pytest.raises(UserError, match="words=0"):
        question_type("Why?", words=0)


def test_most_common_answer_ties_go_to_the_first_listed() -> None:
    assert most_common_answer(["red", "blue", "blue", "red"]) == "red"
    assert most_common_answer(["red", "blue", "blue"]) == "blue"
    assert most_common_answer([]) == ""


# normalised counts: yes 3, 2 2, blue 2, no 1, red 1
ANSWERS = [("yes", "yes", "no"), ("2", "two"), ("red",), ("blue", "Blue"), ("yes",)]


def test_vocab_keeps_the_top_k_ties_alphabetical() -> None:
    assert AnswerVocab.build(ANSWERS, top_k=None).answers == ["yes", "2", "blue", "no", "red"]
    vocab = AnswerVocab.build(ANSWERS, top_k=3)
    assert vocab.answers == ["yes", "2", "blue"] and len(vocab) == 3
    assert vocab.index("Two") == 1 and vocab.index("blue.") == 2 and vocab.index("red") is None


def test_vocab_refuses_bad_input() -> None:
    with pytest.raises(UserError, match="top_k=0"):
        AnswerVocab.build(ANSWERS, top_k=0)
    with pytest.raises(UserError, match="no answers"):
        AnswerVocab.build([(), ("the",)])


def test_soft_targets() -> None:
    vocab = AnswerVocab.build(ANSWERS, top_k=None)  # yes 0, 2 1, blue 2, no 3, red 4
    assert vocab.soft_target(["yes", "yes", "no"]) == pytest.approx({0: 2 / 3, 3: 1 / 3})
    assert vocab.soft_target(["Two", "2", "two"]) == {1: 1.0}  # min(3 / 3, 1)
    assert vocab.soft_target(["yes"] * 4 + ["no"] * 6) == {0: 1.0, 3: 1.0}
    assert vocab.soft_target(["red"]) == {4: 1.0}  # a single answer is a hard target
    assert vocab.soft_target(["2", "blue"]) == {1: 0.5, 2: 0.5}  # two answers: count / 2
    assert vocab.soft_target(["green", "green", "yes"]) == {0: 1 / 3}  # out of vocabulary: none
    assert vocab.soft_target([]) == {}


def test_coverage_and_curve() -> None:
    vocab = AnswerVocab.build(ANSWERS, top_k=3)  # yes, 2, blue
    # most common per question: yes, 2, red, blue, yes -> red is the one not covered
    assert vocab.coverage(ANSWERS) == pytest.approx(4 / 5)
    assert vocab.coverage([*ANSWERS, ()]) == pytest.approx(4 / 5)  # unlabelled: skipped
    assert vocab.coverage([]) == 0.0
    # ranks of the questions' answers: 0, 1, 4, 2, 0
    curve = top_k_coverage(ANSWERS, [1, 2, 3, 5])
    assert [k for k, _ in curve] == [1, 2, 3, 5]
    assert [c for _, c in curve] == pytest.approx([0.4, 0.6, 0.8, 1.0])
    assert top_k_coverage([], [1]) == [(1, 0.0)]


def test_save_load_round_trip(tmp_path: Path) -> None:
    vocab = AnswerVocab.build(ANSWERS, top_k=4)
    vocab.save(tmp_path / "answers.json")
    loaded = AnswerVocab.load(tmp_path / "answers.json")
    assert loaded.answers == vocab.answers and loaded.index("no") == 3


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing.json: answer vocabulary missing"):
        AnswerVocab.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json: not an answer vocabulary"):
        AnswerVocab.load(tmp_path / "bad.json")
