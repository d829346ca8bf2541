"""Quality losses pinned to hand-computed values."""

from __future__ import annotations

import pytest
import torch

from viewfinder.training.quality_losses import QualityLoss, plcc_loss, rank_loss


def test_plcc_loss_is_one_minus_pearson() -> None:
    p, t = torch.tensor([1.0, 2, 3, 4, 5]), torch.tensor([2.0, 1, 4, 3, 5])
    assert float(plcc_loss(p, t)) == pytest.approx(1 - 0.8)
    assert float(plcc_loss(p * 3 + 7, p)) == pytest.approx(0.0, abs=1e-6)  # shift/scale-free
    assert float(plcc_loss(torch.ones(3), t[:3])) == 0.0  # undefined: adds nothing


def test_rank_loss_by_hand() -> None:
    # targets 0 < 1 < 2; predictions 0, 0.05, -1: pairs (1>0): 0.1-0.05=0.05; (2>0): 0.1+1=1.1;
    # (2>1): 0.1+1.05=1.15; each counted from both sides: mean of the three = 2.3 / 3
    loss = rank_loss(torch.tensor([0.0, 0.05, -1.0]), torch.tensor([0.0, 1.0, 2.0]))
    assert float(loss) == pytest.approx(2.3 / 3)
    assert float(rank_loss(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]))) == 0.0
    assert float(rank_loss(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 3.0]))) == 0.0


def test_combined_loss_is_the_sum_and_has_gradients() -> None:
    p = torch.tensor([1.0, 2, 3, 4, 5], requires_grad=True)
    t = torch.tensor([2.0, 1, 4, 3, 5])
    loss = QualityLoss("mse+plcc")(p, t)
    assert float(loss.detach()) == pytest.approx(0.8 + 0.2)  # mse: (1+1+1+1+0)/5
    loss.backward()
    assert p.grad is not None and bool(torch.isfinite(p.grad).all())
    with pytest.raises(ValueError, match="unknown quality loss 'huber'"):
        QualityLoss("mse+huber")
