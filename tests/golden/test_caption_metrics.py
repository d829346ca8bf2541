"""Caption metrics pinned to hand-computed values; METEOR and the PTB tokenizer need Java."""

from __future__ import annotations

import math

import pytest

from viewfinder.metrics.captions import (
    caption_score,
    java_available,
    score_captions,
    simple_tokenize,
)

needs_java = pytest.mark.skipif(not java_available(), reason="no Java runtime on PATH")


def _score(refs: dict, preds: dict, java: bool = False) -> dict:
    if java:
        return score_captions(refs, preds, java=True)
    with pytest.warns(UserWarning, match="no Java runtime"):
        return score_captions(refs, preds, java=False)


@pytest.mark.parametrize("java", [False, pytest.param(True, marks=needs_java)])
def test_bleu_and_rouge_by_hand(java: bool) -> None:
    s = _score({"1": ["a b c d"]}, {"1": "a b c e"}, java)
    assert s["bleu_1"] == pytest.approx(3 / 4)
    assert s["bleu_2"] == pytest.approx(math.sqrt(3 / 4 * 2 / 3))
    assert s["bleu_3"] == pytest.approx((3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3))
    # no 4-gram matches: COCO's scorer counts (0 + 1e-15) / (1 + 1e-9), so not exactly 0
    assert s["bleu_4"] == pytest.approx((3 / 4 * 2 / 3 * 1 / 2 * 1e-15) ** (1 / 4), rel=1e-6)
    # LCS("a c e", "a b c d") = 2: P = 2/3, R = 1/2, F with beta = 1.2
    r = _score({"1": ["a b c d"]}, {"1": "a c e"}, java)["rouge_l"]
    p, rec, b2 = 2 / 3, 1 / 2, 1.2**2
    assert r == pytest.approx((1 + b2) * p * rec / (rec + b2 * p))


@pytest.mark.parametrize("java", [False, pytest.param(True, marks=needs_java)])
def test_cider_d_is_ten_for_exact_captions_with_distinct_words(java: bool) -> None:
    # every n-gram occurs in one image's references only: idf = log 2, cosine 1 for n = 1..4,
    # no length penalty, mean 1, times 10
    refs = {"1": ["a very dark noisy photo"], "2": ["bright and sharp colours here"]}
    s = _score(refs, {k: v[0] for k, v in refs.items()}, java)
    assert s["cider_d"] == pytest.approx(10.0)
    assert s["bleu_4"] == pytest.approx(1.0)
    assert s["distinct_captions"] == 1.0


def test_cider_d_needs_the_whole_set() -> None:
    """With one image every n-gram is in every document: idf 0, CIDEr-D 0 (why a task scores the
    whole evaluated set at once, never batch by batch)."""
    assert _score({"1": ["a dark photo"]}, {"1": "a dark photo"})["cider_d"] == 0.0


def test_java_free_path_is_marked() -> None:
    s = _score({"1": ["too dark"], "2": ["too dark"]}, {"1": "dark", "2": "dark"})
    assert s["meteor"] is None and s["caption_score"] is None and s["java_free"] == 1.0
    assert s["distinct_captions"] == 0.5


@needs_java
def test_full_caption_score_with_meteor() -> None:
    refs = {"1": ["a very dark noisy photo"], "2": ["bright and sharp colours here"]}
    s = score_captions(refs, {k: v[0] for k, v in refs.items()}, java=True)
    assert 0.9 < s["meteor"] <= 1.0 and s["java_free"] == 0.0
    assert s["caption_score"] == pytest.approx(4 * 10 + 3 * s["meteor"] + 2 * 1 + 1)


def test_caption_score_weights() -> None:
    assert caption_score(cider_d=1.0, meteor=0.2, bleu_4=0.3, bleu_3=0.5, rouge_l=0.4) == (
        pytest.approx(4 * 1.0 + 3 * 0.2 + 2 * (0.3 + 0.5) / 2 + 0.4)
    )


def test_simple_tokenizer_drops_punctuation_like_ptb() -> None:
    assert simple_tokenize("A dark, noisy photo -- isn't it?") == "a dark noisy photo is n't it"


def test_mismatched_images_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in images"):
        score_captions({"1": ["a"]}, {"2": "a"}, java=False)


def test_constant_caption_floor_picks_the_best_single_caption():
    from viewfinder.metrics.captions import constant_caption_floor

    references = {"1": ["a dark noisy photo"], "2": ["a dark noisy room"], "3": ["a bright sky"]}
    candidates = ["a bright sky", "a dark noisy photo", "a dark noisy photo", "blurry"]
    best, scores = constant_caption_floor(candidates, references, java=False)
    assert best == "a dark noisy photo"  # fits two images of three
    assert scores["distinct_captions"] == pytest.approx(1 / 3)
    assert scores["bleu_1"] > 0


@needs_java
def test_one_tokenizer_call_gives_the_tokens_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    from viewfinder.metrics import captions

    refs = {"1": ["A red, blurry photo.", "Too dark!"], "2": ["It's sharp; colours pop."]}
    preds = {"1": "a blurry photo", "2": "Sharp -- and bright!"}
    separate = (
        captions._tokenize(refs, True),
        captions._tokenize({k: [v] for k, v in preds.items()}, True),
    )
    calls = []
    real = captions._tokenize
    monkeypatch.setattr(captions, "_tokenize", lambda c, j: calls.append(1) or real(c, j))
    captions._TOKENIZED_REFERENCES.clear()
    assert captions._tokenize_pair(refs, preds, True) == separate
    assert captions._tokenize_pair(refs, {"1": "x", "2": "y"}, True)[0] == separate[0]
    assert len(calls) == 2  # refs and preds together, then the new preds alone
