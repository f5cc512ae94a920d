"""The fine-tuning loss: cross-entropy as before, and the Dice term that makes a small class count per class."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.config import ConfigError, FinetuneConfig, validate_config
from core.seg.seg_loss import SegLoss

IGNORE = 255


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    target[0, :2] = IGNORE
    return logits, target


def test_ce_is_plain_weighted_cross_entropy() -> None:
    logits, target = _batch()
    w = torch.tensor([0.5, 1.0, 2.0])
    got = SegLoss("ce", IGNORE, w)(logits, target)
    assert torch.allclose(got, F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE))


def test_dice_term_is_one_minus_mean_dice_and_ignores_the_ignore_index() -> None:
    logits, target = _batch()
    got = SegLoss("ce+dice", IGNORE)(logits, target) - F.cross_entropy(logits, target, ignore_index=IGNORE)
    p, keep = logits.softmax(1), target != IGNORE
    dice = []
    for c in range(3):
        pc, tc = p[:, c][keep], (target[keep] == c).float()
        dice.append(1 - 2 * (pc * tc).sum() / (pc.sum() + tc.sum()))
    assert torch.allclose(got, torch.stack(dice).mean(), atol=1e-5)
    # an ignored pixel changes nothing, whatever the network says there
    logits2 = logits.clone()
    logits2[0, :, :2] = 50.0
    assert torch.allclose(SegLoss("ce+dice", IGNORE)(logits2, target), SegLoss("ce+dice", IGNORE)(logits, target))


def test_dice_lifts_the_gradient_on_a_small_class_more_than_ce() -> None:
    """Why the option exists: a class on 2 % of the pixels gets a larger share of the gradient with Dice."""
    target = torch.zeros(1, 32, 32, dtype=torch.long)
    target[0, :4, :5] = 1  # 20 of 1024 pixels
    logits = torch.zeros(1, 2, 32, 32, requires_grad=True)

    def small_class_share(name: str) -> float:
        logits.grad = None
        SegLoss(name, IGNORE)(logits, target).backward()
        g = logits.grad[0, 1].abs()
        return float(g[target[0] == 1].sum() / g.sum())

    assert small_class_share("ce+dice") > 1.5 * small_class_share("ce")


def test_bad_loss_names_the_field() -> None:
    with pytest.raises(ConfigError, match="train.loss"):
        validate_config({"train": {"max_steps": 1, "loss": "focal"}}, FinetuneConfig)
    with pytest.raises(ValueError, match="loss must be one of"):
        SegLoss("focal", IGNORE)  # type: ignore[arg-type]
