"""The Hugging Face question encoder (``question_encoder=hf:FOLDER``) on a tiny random BERT the
test writes: padding never changes a question's vector, frozen means frozen, the run folder's
config rebuilds it, and bad sources are one line. Nothing downloaded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from viewfinder.config import build_config
from viewfinder.data.hf_tokenizer import EncoderTokenizer
from viewfinder.errors import UserError
from viewfinder.models.frozen import freeze_backbone
from viewfinder.models.hf_encoder import (
    HFQuestionEncoder,
    encoder_source,
    load_text_encoder,
    save_encoder_config,
)
from viewfinder.models.vqa import build_vqa_model

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
QUESTIONS = [
    "What color is the circle?",
    "How many shapes are there?",
    "Is there a red square?",
    "Where is the blue triangle?",
]


def make_tiny_bert(folder: Path, texts: list[str] = QUESTIONS, *, positions: int = 64) -> Path:
    """A BERT folder as ``save_pretrained`` writes it: a WordPiece tokenizer over the words of
    ``texts`` (``tokenizers``) and a 1-layer, 32-wide random ``BertModel``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = {token: i for i, token in enumerate(SPECIALS + words)}
    wordpiece = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok = BertTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")  # fmt: skip
    tok.save_pretrained(folder)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=positions, pad_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


def _encoder(folder: Path, *, frozen: bool = True, pretrained: bool = True) -> HFQuestionEncoder:
    model = load_text_encoder(str(folder), pretrained=pretrained)
    return HFQuestionEncoder(model, 16, pad=0, frozen=frozen, dropout=0.0, max_length=24,
                             source=str(folder))  # fmt: skip


def test_sources():
    assert encoder_source("hf:bert-base-uncased") == "bert-base-uncased"
    assert encoder_source("hf:/models/my-bert") == "/models/my-bert"
    assert encoder_source("gru") is None


def test_padding_never_changes_the_question_vector(tiny_bert):
    tok = EncoderTokenizer.from_pretrained(str(tiny_bert))
    encoder = _encoder(tiny_bert).eval()
    short = tok.encode("What color is the circle?", 24).ids
    long = tok.encode("How many shapes are there?", 24).ids + [2, 3]
    alone = torch.tensor([short])
    batch = torch.tensor([short + [tok.pad] * (len(long) - len(short) + 5), long + [tok.pad] * 5])
    with torch.no_grad():
        one, both = encoder(alone), encoder(batch)
    assert both.shape == (2, 16)
    assert torch.allclose(one[0], both[0], atol=1e-5)


def test_frozen_encoder_stays_frozen_in_a_frozen_backbone_model(tiny_bert):
    encoder = _encoder(tiny_bert)
    encoder.train()
    assert not encoder.model.training and encoder.drop.training  # no dropout inside BERT
    out = encoder(torch.tensor([[2, 5, 6, 3, 0]]))
    out.sum().backward()
    assert all(p.grad is None for p in encoder.model.parameters())
    assert encoder.proj.weight.grad is not None

    cfg = build_config("vqa", overrides={"model": "cnn", "decoder_dim": 16,
                                         "question_encoder": f"hf:{tiny_bert}"}).model  # fmt: skip
    model, note = build_vqa_model(cfg, question_vocab=20, pad=0, question_length=16, answers=4,
                                  answer_vocab=1, answer_length=4,
                                  question_source=str(tiny_bert))  # fmt: skip
    assert "question encoder hf:" in note and "(frozen)" in note
    trainable = freeze_backbone(model)  # frozen image backbone: the head trains, BERT does not
    assert not any(p.requires_grad for p in model.head.question.model.parameters())
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_frozen_training_remembers_each_question_once(tiny_bert):
    encoder = _encoder(tiny_bert).train()
    plain = encoder(torch.tensor([[2, 5, 6, 3, 0, 0], [2, 7, 3, 0, 0, 0]])).detach()
    calls = []
    encoder.model.register_forward_hook(lambda module, args, out: calls.append(args))
    encoder.cache_questions()
    first = encoder(torch.tensor([[2, 5, 6, 3, 0, 0], [2, 7, 3, 0, 0, 0]]))
    again = encoder(torch.tensor([[2, 7, 3, 0], [2, 5, 6, 3]]))  # other width and order
    assert len(calls) == 1 and torch.allclose(first, plain, atol=1e-6)
    assert torch.allclose(again, plain.flip(0), atol=1e-6)
    first.sum().backward()  # the projection still trains
    assert encoder.proj.weight.grad is not None
    encoder.load_state_dict(encoder.state_dict())  # new weights: forgotten
    encoder(torch.tensor([[2, 7, 3]]))
    assert len(calls) == 2
    tuned = _encoder(tiny_bert, frozen=False)
    tuned.cache_questions()
    assert tuned._cache is None  # fine-tuned: its vectors change every step, never cached


def test_unfrozen_encoder_trains(tiny_bert):
    encoder = _encoder(tiny_bert, frozen=False).train()
    assert encoder.model.training
    encoder(torch.tensor([[2, 5, 6, 3, 0]])).sum().backward()
    grads = [p.grad for p in encoder.model.parameters() if p.requires_grad]
    assert grads and any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_rebuilt_from_the_saved_config_with_the_checkpoint(tiny_bert, tmp_path):
    """Evaluate/predict: config.json from the run folder (no weights, no hub) + the state dict."""
    trained = _encoder(tiny_bert).eval()
    save_encoder_config(str(tiny_bert), tmp_path / "question_encoder")
    assert not (tmp_path / "question_encoder" / "model.safetensors").exists()
    rebuilt = _encoder(tmp_path / "question_encoder", pretrained=False).eval()
    rebuilt.load_state_dict(trained.state_dict())
    ids = torch.tensor([[2, 5, 6, 7, 3, 0, 0]])
    with torch.no_grad():
        assert torch.allclose(trained(ids), rebuilt(ids), atol=1e-6)


def test_bad_sources_are_one_line(tiny_bert, tmp_path):
    from transformers import ViTConfig, ViTModel

    with pytest.raises(UserError, match="folder not found"):
        load_text_encoder(str(tmp_path / "missing"), pretrained=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="could not be loaded") as err:
        load_text_encoder(str(tmp_path / "empty"), pretrained=True)
    assert "\n" not in str(err.value)
    vit = tmp_path / "vit"  # loads (AutoModel knows it) but reads pixels, not token ids
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, image_size=8, patch_size=4)  # fmt: skip
    ViTModel(config).save_pretrained(vit)
    with pytest.raises(UserError, match="is not a text encoder") as err:
        HFQuestionEncoder(load_text_encoder(str(vit), pretrained=True), 8, pad=0, frozen=True,
                          dropout=0.0, max_length=8, source="vit")  # fmt: skip
    assert "\n" not in str(err.value)
    bert = load_text_encoder(str(tiny_bert), pretrained=True)
    with pytest.raises(UserError, match="positions"):
        HFQuestionEncoder(bert, 8, pad=0, frozen=True, dropout=0.0, max_length=65, source="t")
    with pytest.raises(UserError, match="does not belong to the model"):
        HFQuestionEncoder(bert, 8, pad=0, frozen=True, dropout=0.0, max_length=8, source="t",
                          vocab=bert.config.vocab_size + 1)  # fmt: skip
