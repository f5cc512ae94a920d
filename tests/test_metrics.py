"""Segmentation metrics against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from core.seg.metrics import confusion_matrix, scores_from_confusion


def test_confusion_matrix_ignores_and_counts() -> None:
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]


def test_scores_by_hand() -> None:
    cm = torch.tensor([[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    s = scores_from_confusion(cm)
    assert s.iou == pytest.approx([0.5, 2 / 3, 1.0])
    assert s.f1 == pytest.approx([2 / 3, 0.8, 1.0])
    assert s.miou == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert s.overall_accuracy == pytest.approx(4 / 5)
    pe = (1 * 2 + 3 * 2 + 1 * 1) / 25
    assert s.kappa == pytest.approx((0.8 - pe) / (1 - pe))


def test_absent_class_is_left_out_of_the_means() -> None:
    cm = torch.tensor([[3, 0, 0], [0, 0, 0], [0, 0, 2]])
    s = scores_from_confusion(cm)
    assert math.isnan(s.iou[1]) and s.miou == pytest.approx(1.0) and s.kappa == pytest.approx(1.0)
