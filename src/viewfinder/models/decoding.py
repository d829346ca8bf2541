"""Caption / answer decoding: greedy and batched beam search over any ``TextDecoder``.

Written here rather than taken from ``transformers.generate`` because the decoders are plain
PyTorch modules (LSTM, GRU, a small transformer) as well as Hugging Face LMs; all they share is
``start(memory) -> state`` and ``step(state, prefix) -> (logits, state)`` (``models/text.py``).

The settings exist to prevent degenerate output such as the study's "done done done ...":
- ``no_repeat_ngram=n``: a token that would repeat an n-gram already in the caption is banned
  (with n=1 no word repeats);
- ``length_penalty=a`` (beam): hypotheses are ranked by ``sum log p / length ** a``, so short
  captions do not win just for having fewer factors below 1 (GNMT's normalisation without the
  +5 offset);
- ``<eos>`` is banned at the first step (no empty captions); ``<pad>``/``<bos>`` never emitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class DecodeSettings:
    method: str = "beam"  # greedy | beam
    beam_size: int = 3
    max_length: int = 24  # tokens including <bos> and <eos>
    length_penalty: float = 0.6
    no_repeat_ngram: int = 3
    bos: int = 1
    eos: int = 2
    pad: int = 0

    @classmethod
    def from_config(cls, text: Any, bos: int, eos: int, pad: int) -> DecodeSettings:
        return cls(text.decoding, text.beam_size, text.max_length, text.length_penalty,
                   text.no_repeat_ngram, bos, eos, pad)  # fmt: skip


class Decoder(Protocol):
    def start(self, memory: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def step(
        self, state: dict[str, torch.Tensor], prefix: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def _reorder(state: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v.index_select(0, index) for k, v in state.items()}


def _banned(prefix: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``prefix`` (bos included)."""
    if n <= 0 or len(prefix) < n:
        return set()
    if n == 1:
        return set(prefix[1:])
    tail = tuple(prefix[len(prefix) - n + 1 :])
    starts = range(len(prefix) - n + 1)
    return {prefix[i + n - 1] for i in starts if tuple(prefix[i : i + n - 1]) == tail}


def _mask_scores(
    logprobs: torch.Tensor, prefixes: torch.Tensor, s: DecodeSettings, t: int
) -> torch.Tensor:
    """-inf for tokens decoding must not emit at step ``t`` (see the module doc); the last
    step may only end the caption."""
    if t == s.max_length - 1:
        eos = logprobs[:, s.eos].clone()
        logprobs.fill_(float("-inf"))
        logprobs[:, s.eos] = eos
        return logprobs
    logprobs[:, [s.pad, s.bos]] = float("-inf")
    if t == 1:
        logprobs[:, s.eos] = float("-inf")
    if s.no_repeat_ngram > 0:
        for row, prefix in enumerate(prefixes.tolist()):
            banned = _banned(prefix, s.no_repeat_ngram)
            if banned:
                logprobs[row, list(banned)] = float("-inf")
    return logprobs


def _pad(sequences: list[list[int]], pad: int, device: torch.device) -> torch.Tensor:
    width = max(len(seq) for seq in sequences)
    out = torch.full((len(sequences), width), pad, dtype=torch.long, device=device)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
    return out


@torch.no_grad()
def greedy(decoder: Decoder, memory: torch.Tensor, s: DecodeSettings) -> torch.Tensor:
    """(B, L) ids: ``<bos>``, the most likely token at each step, ``<eos>`` (then padding)."""
    batch = memory.shape[0]
    state = decoder.start(memory)
    seqs = torch.full((batch, 1), s.bos, dtype=torch.long, device=memory.device)
    done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
    for t in range(1, s.max_length):
        logits, state = decoder.step(state, seqs)
        logprobs = _mask_scores(logits.float().log_softmax(-1), seqs, s, t)
        token = logprobs.argmax(-1)
        token = torch.where(done, torch.full_like(token, s.pad), token)
        seqs = torch.cat([seqs, token[:, None]], dim=1)
        done |= token == s.eos
        if bool(done.all()):
            break
    return seqs


@torch.no_grad()
def beam_search(decoder: Decoder, memory: torch.Tensor, s: DecodeSettings) -> torch.Tensor:
    """(B, L) ids of the best of ``beam_size`` hypotheses per image (length-normalised)."""
    if s.method == "greedy" or s.beam_size == 1:
        return greedy(decoder, memory, s)
    batch, k, device = memory.shape[0], s.beam_size, memory.device
    state = _reorder(decoder.start(memory), torch.arange(batch, device=device).repeat_interleave(k))
    seqs = torch.full((batch * k, 1), s.bos, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis at first: the others would duplicate it
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    open_items = set(range(batch))
    for t in range(1, s.max_length):
        logits, state = decoder.step(state, seqs)
        logprobs = _mask_scores(logits.float().log_softmax(-1), seqs, s, t)
        vocab = logprobs.shape[-1]
        total = (scores.view(-1, 1) + logprobs).view(batch, k * vocab)
        top_scores, top_index = total.topk(min(2 * k, k * vocab), dim=1)
        last = t == s.max_length - 1
        keep_rows, keep_tokens, keep_scores = [], [], []
        for b in range(batch):
            rows, toks, vals = [], [], []
            for value, index in zip(top_scores[b].tolist(), top_index[b].tolist(), strict=True):
                beam, token = divmod(index, vocab)
                row = b * k + beam
                if value == float("-inf"):
                    break
                if token == s.eos:
                    if b in open_items:
                        seq = seqs[row].tolist() + [s.eos]
                        finished[b].append((value / (len(seq) - 1) ** s.length_penalty, seq))
                    continue
                if len(rows) < k:
                    rows.append(row), toks.append(token), vals.append(value)
            if len(finished[b]) >= k:
                open_items.discard(b)
            while len(rows) < k:  # keep the shape: dead beams score -inf
                rows.append(b * k), toks.append(s.pad), vals.append(float("-inf"))
            keep_rows += rows
            keep_tokens += toks
            keep_scores.append(vals)
        if not open_items or last:
            break
        index = torch.tensor(keep_rows, device=device)
        state = _reorder(state, index)
        seqs = torch.cat([seqs.index_select(0, index),
                          torch.tensor(keep_tokens, device=device)[:, None]], dim=1)  # fmt: skip
        scores = torch.tensor(keep_scores, device=device)
    best = [max(f)[1] if f else [s.bos, s.eos] for f in finished]
    return _pad(best, s.pad, device)


def decode(decoder: Decoder, memory: torch.Tensor, s: DecodeSettings) -> torch.Tensor:
    """Greedy or beam search as ``s.method`` says."""
    return beam_search(decoder, memory, s) if s.method == "beam" else greedy(decoder, memory, s)
