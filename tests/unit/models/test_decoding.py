"""Greedy and beam decoding on a hand-made language model, and decoder step/forward agreement."""

from __future__ import annotations

import math

import pytest
import torch

from viewfinder.models.decoding import DecodeSettings, beam_search, decode, greedy
from viewfinder.models.text import RNNDecoder, TransformerTextDecoder

PAD, BOS, EOS, A, B = range(5)
# next-token probabilities given the last token (rows: pad, bos, eos, A, B)
TABLE = torch.tensor([
    [0.2, 0.2, 0.2, 0.2, 0.2],
    [0.0, 0.0, 0.0, 0.6, 0.4],   # after <bos>: A is likelier ...
    [0.2, 0.2, 0.2, 0.2, 0.2],
    [0.0, 0.0, 0.32, 0.34, 0.34],  # ... but after A nothing is sure
    [0.0, 0.0, 0.9, 0.05, 0.05],  # while B is almost always followed by <eos>
])  # fmt: skip


class TableDecoder:
    """A bigram model: the logits depend only on the last token."""

    def start(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"memory": memory}

    def step(self, state, prefix):
        return TABLE[prefix[:, -1]].clamp(min=1e-9).log(), state


def settings(**kw) -> DecodeSettings:
    base = {"beam_size": 3, "max_length": 8, "length_penalty": 0.0, "no_repeat_ngram": 0,
            "bos": BOS, "eos": EOS, "pad": PAD}  # fmt: skip
    return DecodeSettings(**{**base, **kw})


MEMORY = torch.zeros(2, 1, 1)


def test_greedy_takes_the_likeliest_token_and_is_cut_at_max_length():
    ids = greedy(TableDecoder(), MEMORY, settings(method="greedy"))
    assert ids.shape == (2, 8)
    assert ids[0].tolist() == [BOS, A, A, A, A, A, A, EOS]  # the last step may only end it


def test_beam_search_finds_the_sequence_greedy_misses():
    ids = beam_search(TableDecoder(), MEMORY, settings(method="beam"))
    assert ids[0].tolist() == [BOS, B, EOS] and ids[1].tolist() == [BOS, B, EOS]
    assert math.log(0.4 * 0.9) > math.log(0.6 * 0.32)  # why: B <eos> beats A <eos>


def test_beam_of_one_is_greedy():
    s = settings(method="beam", beam_size=1)
    assert torch.equal(decode(TableDecoder(), MEMORY, s), greedy(TableDecoder(), MEMORY, s))


def test_no_repeat_ngram_stops_degenerate_repetition():
    ids = greedy(TableDecoder(), MEMORY, settings(method="greedy", no_repeat_ngram=1))
    body = [t for t in ids[0].tolist() if t not in (BOS, EOS, PAD)]
    assert len(body) == len(set(body))  # "A A A ..." cannot happen: no token twice
    assert ids[0].tolist() == [BOS, A, B, EOS]


def test_eos_is_never_first_and_padding_follows_it():
    table = TABLE.clone()
    table[BOS] = torch.tensor([0.0, 0.0, 0.9, 0.05, 0.05])  # <eos> first would be likeliest

    class Eager(TableDecoder):
        def step(self, state, prefix):
            return table[prefix[:, -1]].clamp(min=1e-9).log(), state

    for method in ("greedy", "beam"):
        ids = decode(Eager(), MEMORY, settings(method=method))
        assert ids[0, 1].item() != EOS
        after = ids[0].tolist()[ids[0].tolist().index(EOS) + 1 :]
        assert all(t == PAD for t in after)


def test_length_penalty_prefers_longer_hypotheses():
    short = beam_search(TableDecoder(), MEMORY, settings(length_penalty=0.0))
    long = beam_search(TableDecoder(), MEMORY, settings(length_penalty=3.0))
    assert (long[0] != PAD).sum() > (short[0] != PAD).sum()


@pytest.mark.parametrize("make", [
    lambda: RNNDecoder("lstm", 11, 16, layers=2, dropout=0.0, attention=False),
    lambda: RNNDecoder("gru", 11, 16, layers=1, dropout=0.0, attention=True),
    lambda: TransformerTextDecoder(11, 16, layers=2, heads=4, dropout=0.0, max_length=8),
])  # fmt: skip
def test_step_by_step_decoding_matches_teacher_forcing(make):
    """What decoding sees one token at a time equals what training sees at once."""
    torch.manual_seed(0)
    decoder = make().eval()
    memory, tokens = torch.randn(3, 5, 16), torch.randint(3, 11, (3, 6))
    with torch.no_grad():
        forced = decoder(memory, tokens)
        state, stepped = decoder.start(memory), []
        for t in range(tokens.shape[1]):
            logits, state = decoder.step(state, tokens[:, : t + 1])
            stepped.append(logits)
    assert torch.allclose(forced, torch.stack(stepped, dim=1), atol=1e-5)


def test_beam_search_runs_on_real_decoders_and_reorders_their_state():
    torch.manual_seed(0)
    decoder = RNNDecoder("lstm", 11, 16, layers=1, dropout=0.0, attention=True).eval()
    s = settings(beam_size=3, no_repeat_ngram=2, max_length=6)
    ids = beam_search(decoder, torch.randn(4, 5, 16), s)
    assert ids.shape[0] == 4 and (ids[:, 0] == BOS).all()
    assert all(EOS in row for row in ids.tolist())
