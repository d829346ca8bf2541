"""Word-level tokenizer and vocabulary: normalisation, round trips, truncation, unknown words."""

from __future__ import annotations

from pathlib import Path

import pytest

from viewfinder.data.text import EOS, Vocabulary, join_words, mirror_text, words
from viewfinder.errors import UserError

CAPTIONS = ["Too dark, noisy sky.", "A bright, sharp photo!", "too dark and blurry", "it's noisy"]


def test_words_and_join() -> None:
    assert words("Too dark, noisy sky.") == ["too", "dark", ",", "noisy", "sky", "."]
    assert words("It's (very) soft") == ["it's", "(", "very", ")", "soft"]
    assert join_words(["it's", "(", "very", ")", "soft", "."]) == "it's (very) soft."


def test_round_trip_is_the_normalised_text() -> None:
    vocab = Vocabulary.build(CAPTIONS)
    for text in CAPTIONS:
        encoded = vocab.encode(text, max_length=32)
        assert encoded.ids[0] == vocab.bos and encoded.ids[-1] == vocab.eos
        assert not encoded.truncated
        assert vocab.decode(encoded.ids) == join_words(words(text))


def test_frequency_order_min_count_and_unknown_words() -> None:
    vocab = Vocabulary.build(CAPTIONS, min_count=2)
    assert vocab.itos[4:] == [",", "dark", "noisy", "too"]  # by count, ties alphabetical
    assert vocab.decode(vocab.encode("too bright", 8).ids) == "too <unk>"


def test_truncation_keeps_eos_and_is_reported() -> None:
    vocab = Vocabulary.build(CAPTIONS)
    encoded = vocab.encode("too dark and blurry", max_length=4)
    assert len(encoded.ids) == 4 and encoded.truncated
    assert vocab.decode(encoded.ids) == "too dark"
    assert vocab.decode([vocab.bos, vocab.stoi["dark"], vocab.eos, vocab.stoi["sky"]]) == "dark"
    assert EOS in vocab.stoi


def test_save_load_and_bad_settings(tmp_path: Path) -> None:
    vocab = Vocabulary.build(CAPTIONS)
    vocab.save(tmp_path / "vocab.json")
    again = Vocabulary.load(tmp_path / "vocab.json")
    assert again.itos == vocab.itos
    with pytest.raises(UserError, match="vocabulary missing"):
        Vocabulary.load(tmp_path / "none.json")
    with pytest.raises(UserError, match="max_length=2"):
        vocab.encode("dark", max_length=2)
    with pytest.raises(UserError, match="no text"):
        Vocabulary.build(["", "  "])


@pytest.mark.parametrize(
    ("text", "mirrored"),
    [
        ("Is the star on the left side?", "Is the star on the right side?"),
        ("Left or right?", "Right or left?"),
        ("THE LEFTMOST CUP", "THE RIGHTMOST CUP"),
        ("left-hand side, rightmost", "right-hand side, leftmost"),
        ("he left the bright room", "he right the bright room"),  # a verb too: rare, accepted
        ("leftover copyright", "leftover copyright"),  # whole words only
    ],
)
def test_mirror_text_swaps_left_and_right_as_whole_words(text: str, mirrored: str) -> None:
    assert mirror_text(text) == mirrored
    assert mirror_text(mirror_text(text)) == text
