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


def test_iou_and_f1_are_smps_to_the_bit() -> None:
    """The two divisions smp.metrics did, done here (a probe's process no longer imports smp): equal on random matrices
    of every size of count, with classes absent from one side or both."""
    import segmentation_models_pytorch as smp

    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        c = int(torch.randint(2, 9, (1,), generator=g))
        cm = torch.randint(0, 10 ** int(torch.randint(1, 9, (1,), generator=g)), (c, c), generator=g)
        cm[torch.rand(c, c, generator=g) < 0.3] = 0
        ours = scores_from_confusion(cm)
        tp = cm.diag()
        stats = [x[None] for x in (tp, cm.sum(0) - tp, cm.sum(1) - tp, cm.sum() - cm.sum(0) - cm.sum(1) + tp)]
        present = (stats[0] + stats[1] + stats[2])[0] > 0
        for mine, fn in ((ours.iou, smp.metrics.iou_score), (ours.f1, smp.metrics.f1_score)):
            theirs = torch.where(present, fn(*stats, reduction="none", zero_division=float("nan"))[0], torch.nan)
            assert torch.equal(torch.tensor(mine).isnan(), theirs.isnan())
            assert torch.equal(torch.tensor(mine)[present], theirs[present].to(torch.float64))
