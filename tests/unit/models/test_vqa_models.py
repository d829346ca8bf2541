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


def test_film_reads_the_cell_map_in_place():
    """The same cells in another place answer differently ("is the star on the left?"), which
    mean and max pooling could not tell apart; any grid size maps to the same read-out."""
    torch.manual_seed(0)
    fusion = Fusion("film", 10, 16, dropout=0.0, layers=2, extra=2).eval()
    grid = torch.randn(1, 16, 10)
    mirrored = grid.reshape(1, 4, 4, 10).flip(2).reshape(1, 16, 10)  # left and right swapped
    question, one = torch.randn(1, 16), torch.tensor([0])
    assert not torch.allclose(fusion(grid, one, question), fusion(mirrored, one, question))
    wide = fusion(torch.randn(1, 12, 10), one, question, shape=(3, 4))  # not square: say so
    tall = fusion(torch.randn(1, 49, 10), one, question)  # 7 x 7, pooled to 4 x 4
    assert wide.shape == tall.shape == (1, 16)


def test_colour_and_position_skip_the_feature_norm():
    """Only the backbone channels are normalised: scaling them changes nothing, while the last
    ``extra`` channels (colour, x, y) reach the fusion as they are."""
    torch.manual_seed(0)
    fusion = Fusion("film", 10, 16, dropout=0.0, extra=5).eval()
    grid, question, one = torch.randn(1, 16, 10), torch.randn(1, 16), torch.tensor([0])
    scaled = torch.cat([grid[..., :5] * 7.0, grid[..., 5:]], dim=-1)
    assert torch.allclose(fusion(grid, one, question), fusion(scaled, one, question), atol=1e-4)
    shifted = torch.cat([grid[..., :5], grid[..., 5:] + 1.0], dim=-1)
    assert not torch.allclose(fusion(grid, one, question), fusion(shifted, one, question))


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
