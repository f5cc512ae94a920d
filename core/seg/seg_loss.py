"""The fine-tuning loss: pixel cross-entropy (optionally class-weighted), plus a Dice term on request.

Why a Dice term: cross-entropy is a sum over pixels, so a class that covers 3 % of the pixels (roads, buildings,
vegetation on Dubai's tiles) moves it little even with ``class_weights: balanced``; Dice is a ratio per class
(overlap over size), so each class present in the batch counts about as much as any other, which is closer to what
mIoU rewards. The Dice term is segmentation-models-pytorch's ``DiceLoss`` (multiclass, from logits, ignore index
left out; a class absent from the batch adds nothing).
"""
from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn

from ..config.seg import SegLossName

LOSSES: tuple[str, ...] = get_args(SegLossName)  # one list of names: the config's


class SegLoss(nn.Module):
    """``ce``: cross-entropy; ``ce+dice``: cross-entropy + Dice (equal weights). Computed in float32."""

    def __init__(self, name: SegLossName, ignore_index: int, class_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}")
        self.name, self.ignore_index = name, ignore_index
        self.class_weight = class_weight
        self.dice = DiceLoss("multiclass", from_logits=True, ignore_index=ignore_index) if name == "ce+dice" else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        loss = F.cross_entropy(logits, target, weight=self.class_weight, ignore_index=self.ignore_index)
        if self.dice is not None:
            loss = loss + self.dice(logits, target)
        return loss
