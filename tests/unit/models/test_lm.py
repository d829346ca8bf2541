"""The Hugging Face causal-LM decoder and its BPE tokenizer, on a tiny random GPT-2 the test
writes (``hf:FOLDER``): nothing downloaded."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import torch

from viewfinder.data.bpe import BPETokenizer, whisper_gpt2_file
from viewfinder.errors import UserError
from viewfinder.models.decoding import DecodeSettings, decode
from viewfinder.models.lm import CausalLMDecoder, lm_source, load_lm

TEXTS = [
    "a red circle on a noisy background",
    "a small blue square, slightly too dark.",
    "the green triangle is in focus",
    "two yellow stars on grey",
]


def make_tiny_lm(folder: Path, texts: list[str] = TEXTS, *, vocab: int = 300) -> Path:
    """A GPT-2 folder as ``save_pretrained`` writes it: a byte-level BPE trained on ``texts``
    and a 2-layer, 32-wide random GPT-2 (what ``decoder=hf:FOLDER`` loads)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)  # fmt: skip
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    tok.save_pretrained(folder)
    eos = tok.eos_token_id
    config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=eos, eos_token_id=eos)  # fmt: skip
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_lm(tmp_path_factory.mktemp("lm") / "tiny")


def _decoder(folder: Path) -> tuple[CausalLMDecoder, BPETokenizer]:
    tok = BPETokenizer.from_pretrained(str(folder))
    return CausalLMDecoder(load_lm(str(folder)), len(tok)).eval(), tok


def test_decoder_names_map_to_sources():
    assert lm_source("gpt2") == "openai-community/gpt2"
    assert lm_source("hf:/models/my-lm") == "/models/my-lm"
    assert lm_source("lstm") is None


def test_step_by_step_decoding_matches_teacher_forcing(tiny_lm):
    """The cached one-token steps see exactly what training sees at once."""
    decoder, tok = _decoder(tiny_lm)
    torch.manual_seed(0)
    memory = torch.randn(3, 5, decoder.width)
    tokens = torch.randint(0, len(tok), (3, 7))
    with torch.no_grad():
        forced = decoder(memory, tokens)
        state, stepped = decoder.start(memory), []
        for t in range(tokens.shape[1]):
            logits, state = decoder.step(state, tokens[:, : t + 1])
            stepped.append(logits)
    assert forced.shape == (3, 7, len(tok))
    assert torch.allclose(forced, torch.stack(stepped, dim=1), atol=1e-5)
    assert all(v.shape[0] == 3 for v in state.values())  # batch-first: beam search reorders it


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_decoding_runs_and_ends_with_eos(tiny_lm, method):
    decoder, tok = _decoder(tiny_lm)
    s = DecodeSettings(method=method, beam_size=3, max_length=8, no_repeat_ngram=2,
                       bos=tok.bos, eos=tok.eos, pad=tok.pad)  # fmt: skip
    ids = decode(decoder, torch.randn(2, 4, decoder.width), s)
    assert (ids[:, 0] == tok.bos).all()
    for row in ids.tolist():
        assert tok.eos in row and tok.pad not in row[: row.index(tok.eos)]
        assert tok.bos not in row[1:]
        assert isinstance(tok.decode(row), str)


def test_embedding_grows_by_pad_and_bos(tiny_lm):
    decoder, tok = _decoder(tiny_lm)
    assert len(tok) == tok.size + 2 and {tok.pad, tok.bos} == {tok.size, tok.size + 1}
    assert tok.eos < tok.size and tok.eos not in (tok.pad, tok.bos)
    weight = decoder.lm.get_input_embeddings().weight
    assert weight.shape[0] == len(tok)
    assert torch.allclose(weight[tok.pad], weight[: tok.size].mean(dim=0), atol=1e-6)
    assert decoder.lm.get_output_embeddings().weight.shape[0] == len(tok)


def test_bpe_round_trip_truncation_save_and_load(tiny_lm, tmp_path):
    tok = BPETokenizer.from_pretrained(str(tiny_lm))
    text = "a small blue square, slightly too dark."
    encoded = tok.encode(text, 64)
    assert encoded.ids[0] == tok.bos and encoded.ids[-1] == tok.eos and not encoded.truncated
    assert tok.decode(encoded.ids) == text
    assert tok.decode([*encoded.ids, tok.pad, 5]) == text  # stops at <eos>
    cut = tok.encode(text, 4)
    assert len(cut.ids) == 4 and cut.truncated and cut.ids[-1] == tok.eos
    tok.save(tmp_path / "bpe.json")
    again = BPETokenizer.load(tmp_path / "bpe.json")
    assert again.encode(text, 64) == encoded and again.decode(encoded.ids) == text
    assert (again.pad, again.bos, again.eos, len(again)) == (tok.pad, tok.bos, tok.eos, len(tok))


def _tiny_tiktoken(path: Path) -> Path:
    """All 256 bytes, then merges (``" a"``, ``"re"``, ``"red"``...), in tiktoken's file format."""
    tokens = [bytes([i]) for i in range(256)] + [b" a", b"re", b" re", b" red", b"ci", b" ci"]
    lines = [f"{base64.b64encode(t).decode()} {rank}" for rank, t in enumerate(tokens)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tiktoken_file_in_the_lm_folder(tmp_path):
    folder = tmp_path / "lm"
    folder.mkdir()
    _tiny_tiktoken(folder / "gpt2.tiktoken")
    tok = BPETokenizer.from_pretrained(str(folder))
    assert tok.eos == 262 and (tok.pad, tok.bos) == (263, 264)
    encoded = tok.encode("a red circle", 24)
    assert 259 in encoded.ids  # " red" is one token
    assert tok.decode(encoded.ids) == "a red circle"
    (tmp_path / "run").mkdir()
    tok.save(tmp_path / "run" / "bpe.json")
    assert (tmp_path / "run" / "bpe.tiktoken").is_file()  # the ranks travel with the run
    assert BPETokenizer.load(tmp_path / "run" / "bpe.json").decode(encoded.ids) == "a red circle"


def test_missing_tokenizer_and_lm_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="no tokenizer"):
        BPETokenizer.from_pretrained(str(tmp_path))
    with pytest.raises(UserError, match="folder not found"):
        load_lm(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="could not be loaded"):
        load_lm(str(tmp_path))


@pytest.mark.skipif(whisper_gpt2_file() is None, reason="openai-whisper not installed")
def test_gpt2_bpe_from_whisper_matches_gpt2_ids():
    tok = BPETokenizer.from_tiktoken(whisper_gpt2_file())
    assert tok.eos == 50256 and len(tok) == 50259
    assert tok.encode("Hello world", 8).ids == [tok.bos, 15496, 995, tok.eos]
    assert tok.decode(tok.encode("A cat, on a mat.", 24).ids) == "A cat, on a mat."
