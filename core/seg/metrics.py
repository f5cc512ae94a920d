"""Segmentation metrics, all derived from one confusion matrix.

The confusion matrix is accumulated over a whole split (rows: true class, columns: predicted class, ignored pixels
left out); per-class IoU and F1 come from its tp/fp/fn counts as smp.metrics computes them (integer counts divided
in float32: the same bits, without importing smp, which a linear probe's process would otherwise load for two
divisions), and Cohen's kappa from the matrix itself. Classes that never occur in the ground truth nor in the
predictions are left out of the means (NaN per class), as the paper's MMSegmentation evaluation does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """(C, C) int64 counts; rows are the true class, columns the predicted one."""
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).view(num_classes, num_classes).cpu()


@dataclass
class SegScores:
    iou: list[float]
    f1: list[float]
    miou: float
    mean_f1: float
    overall_accuracy: float
    kappa: float
    confusion: list[list[int]]

    def summary(self) -> dict[str, float]:
        return {"miou": self.miou, "mean_f1": self.mean_f1, "oa": self.overall_accuracy, "kappa": self.kappa}

    def as_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        names = class_names or [str(i) for i in range(len(self.iou))]
        return {**self.summary(), "iou": dict(zip(names, self.iou)), "f1": dict(zip(names, self.f1)),
                "confusion": self.confusion}


def scores_from_confusion(cm: Tensor) -> SegScores:
    cm = cm.to(torch.float64)
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    total = cm.sum()
    present = (tp + fp + fn) > 0
    tp_i, fp_i, fn_i = (x.to(torch.int64) for x in (tp, fp, fn))
    iou = tp_i / (tp_i + fp_i + fn_i)  # 0 / 0 is NaN: a class absent from both sides
    f1 = 2.0 * tp_i / (2.0 * tp_i + 1.0 * fn_i + fp_i)  # smp's F-beta at beta 1.0: float32 from the products on
    iou = torch.where(present, iou, torch.nan)
    f1 = torch.where(present, f1, torch.nan)
    oa = float(tp.sum() / total) if total > 0 else float("nan")
    expected = float((cm.sum(0) * cm.sum(1)).sum() / total ** 2) if total > 0 else float("nan")
    kappa = (oa - expected) / (1 - expected) if total > 0 and expected < 1 else float("nan")
    return SegScores(iou=iou.tolist(), f1=f1.tolist(), miou=float(iou[present].mean()) if present.any() else float("nan"),
                     mean_f1=float(f1[present].mean()) if present.any() else float("nan"), overall_accuracy=oa,
                     kappa=kappa, confusion=cm.to(torch.int64).tolist())


def scores_text(miou: float, oa: float, kappa: float) -> str:
    """The headline figures as every command line prints them: percents, as the cards and pages give them."""
    return f"mIoU {100 * miou:.1f} %  OA {100 * oa:.1f} %  kappa {kappa:.3f}"


def iou_lines(iou: dict[str, float]) -> list[str]:
    """One line per class, the figures in one column whatever the names' lengths."""
    width = max(map(len, iou), default=0)
    return [f"  IoU {name:<{width}}  {100 * v:5.1f} %" for name, v in iou.items()]
