"""VQA model pieces: question encoders ignore padding, every fusion's shapes, coordinates and
colour cells, per-image work gathered per question, soft-target cross-entropy."""

from __future__ import annotations

import pytest
import torch

from viewfinder.config import build_config
from viewfinder.errors import UserError
from viewfinder.models.frozen import frozen_parts
from viewfinder.models.vqa import Fusion, QuestionEncoder, build_vqa_model, with_coordinates
from viewfinder.tasks.vqa import soft_cross_entropy


@pytest.mark.parametrize("kind", ["gru", "lstm", "transformer"])
def test_question_encoder_ignores_padding(kind):
    torch.manual_seed(0)
    encoder = QuestionEncoder(kind, 20, 16, pad=0, layers=1, heads=2, dropout=0.0, max_length=12)
    encoder.eval()
    short = torch.tensor([[1, 5, 6, 2]])
    padded = torch.tensor([[1, 5, 6, 2, 0, 0, 0, 0]])
    assert torch.allclose(encoder(short), encoder(padded), atol=1e-5)


@pytest.mark.parametrize("kind", ["concat", "product", "attention", "film"])
def test_fusions_gather_images_per_question(kind):
    torch.manual_seed(0)
    fusion = Fusion(kind, 10, 16, dropout=0.0).eval()
    grid = torch.randn(2, 9, 10)  # two distinct images
    question = torch.randn(3, 16)
    image_of = torch.tensor([1, 0, 1])
    out = fusion(grid, image_of, question)
    assert out.shape == (3, 16)
    again = fusion(grid[image_of], torch.arange(3), question)  # the same, one image per row
    assert torch.allclose(out, again, atol=1e-5)


def test_unknown_fusion_is_one_line():
    with pytest.raises(UserError, match="fusion='sum'"):
        Fusion("sum", 4, 4, 0.0)


def test_coordinates_follow_row_major_cells():
    grid = with_coordinates(torch.zeros(1, 3, 2, 3))
    assert grid.shape == (1, 6, 5)
    assert grid[0, 0, 3:].tolist() == [-1.0, -1.0] and grid[0, 5, 3:].tolist() == [1.0, 1.0]


def test_vqa_model_caches_grid_with_colour_and_answers():
    cfg = build_config("vqa", overrides={"model": "cnn", "decoder_dim": 16}).model
    model, _ = build_vqa_model(cfg, question_vocab=20, pad=0, question_length=8, answers=5,
                               answer_vocab=10, answer_length=6)  # fmt: skip
    model.eval()
    images = torch.rand(2, 3, 32, 32)
    features_fn, _ = frozen_parts(model)
    cached = features_fn(images)
    assert cached.shape[1] == model.backbone.num_features + 3  # + each cell's mean colour
    question, image_of = torch.randint(1, 20, (3, 5)), torch.tensor([0, 1, 1])
    direct = model(images, question, image_of)["logits"]
    from_cache = model(cached, question, image_of, from_features=True)["logits"]
    assert direct.shape == (3, 5) and torch.allclose(direct, from_cache, atol=1e-5)


def test_soft_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.3, 0.3], [0.0, 0.0, 0.0]])
    log_p = logits.log_softmax(dim=1)
    expected = (-log_p[0, 0] - 0.5 * (log_p[1, 1] + log_p[1, 2])) / 2  # row 3: no known answer
    assert torch.isclose(soft_cross_entropy(logits, target), expected)
    assert soft_cross_entropy(logits, torch.zeros(3, 3)).item() == 0.0
