"""Test scores over whole scenes, by the same sliding-window inference that ``core.seg.segment`` runs.

Why: tiles cut from a scene overlap at its edges (the last tile is aligned to the border), so scoring tiles
counts some pixels twice, and a model is never used on isolated tiles anyway. Here every test scene is read
whole, segmented by :func:`core.seg.infer.predict` (blended windows, the defaults of ``core.seg.segment``) and compared
with its full label map: each pixel counts once.

A split cut by tile from a single scene (the fallback when a data set has one scene) cannot be scored this way
without scoring training pixels too; there the tiles are scored (``evaluate``, also the validation during
fine-tuning) and the result says so. ``test_scores`` picks the way for a run's test split.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .infer import predict
from .metrics import SegScores, confusion_matrix, scores_from_confusion
from ..data.protocols import LabeledTiles, SceneTiles, TileSet
from ..data.seg_augment import eval_transform
from ..imaging.bands import band_norm, bands_of

DEFAULT_TILE = 512  # as core.seg.segment
DEFAULT_OVERLAP = 0.25


@dataclass
class SceneEval:
    scores: SegScores
    method: str  # "whole scenes" or "tiles"
    scenes: list[str]
    pixels: int
    tile: int
    overlap: float
    tta: bool = False  # each window also through a mirrored pass

    def record(self) -> dict[str, Any]:
        """What ``test_metrics.json`` says about how the scores were computed."""
        how = (f"whole scenes by sliding-window inference (window {self.tile} px, overlap {self.overlap}, as "
               "core.seg.segment), each pixel counted once") if self.method == "whole scenes" else \
            "tiles of a split cut by tile from one scene (edge tiles overlap: some pixels counted twice)"
        return {"evaluation": self.method, "evaluation_detail": how + (", flip TTA" if self.tta else ""),
                "scenes": self.scenes, "pixels": self.pixels, "window": self.tile, "overlap": self.overlap,
                **({"tta": True} if self.tta else {})}


def whole_scenes_possible(split: TileSet, others: list[TileSet]) -> bool:
    """Whether no scene of ``split`` has tiles in the other splits (so its scenes can be scored whole)."""
    if not isinstance(split, SceneTiles) or not all(isinstance(o, SceneTiles) for o in others if len(o)):
        return False
    mine = set(np.unique(split.scene_ids).tolist())
    return all(not (mine & set(np.unique(o.scene_ids).tolist())) for o in others if len(o))


def evaluate_scenes(model: nn.Module, split: SceneTiles, num_classes: int, ignore_index: int, *,
                    device: torch.device | str | None = None, tile: int = DEFAULT_TILE,
                    overlap: float = DEFAULT_OVERLAP, batch_size: int = 4, card: dict[str, Any] | None = None,
                    progress: Callable[[int, int], None] | None = None, tta_flip: bool = False) -> SceneEval:
    """Scores of ``model`` over every whole scene that has tiles in ``split`` (``tta_flip``: each window also
    through a mirrored pass, as ``core.segment --tta``)."""
    scene_ids = [int(s) for s in np.unique(split.scene_ids)]
    names = split.scene_names
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    pixels = 0
    if card is None:  # a bare model (the probe's): normalised as the split's bands are in training
        card = {"normalization": dict(zip(("mean", "std"), band_norm(bands_of(split))))}
    for k, si in enumerate(scene_ids):
        image, labels = split.scene_arrays(si)
        pred = predict(model, image, tile=tile, overlap=overlap, batch_size=batch_size, device=device, card=card,
                       num_classes=num_classes, tta_flip=tta_flip)
        target = torch.from_numpy(labels.astype(np.int64))
        cm += confusion_matrix(torch.from_numpy(pred), target, num_classes, ignore_index)
        pixels += int((target != ignore_index).sum())
        if progress is not None:
            progress(k + 1, len(scene_ids))
    return SceneEval(scores_from_confusion(cm), "whole scenes", [names[s] for s in scene_ids], pixels, tile, overlap,
                     tta_flip)


# ------------------------------------------------------------------------------------------------ tiles; a run's test
def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:  # a mirror needs more pixels than it pads: a 16 px tile padded to 32 repeats its edge (a review)
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
    return x, h, w


@torch.inference_mode()
def evaluate(model: nn.Module, split: LabeledTiles, num_classes: int, ignore_index: int, device: torch.device,
             batch_size: int = 8, autocast: tuple[bool, torch.dtype] = (False, torch.float32),
             progress: Callable[[int, int], None] | None = None) -> SegScores:
    """Scores of the model on every tile of a split, from one confusion matrix; ``progress(done, total)`` after
    each batch."""
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for start in range(0, len(split), batch_size):
        idx = list(range(start, min(start + batch_size, len(split))))
        x = eval_transform(split.get_images(idx).to(device), bands_of(split))
        x, h, w = _pad_to(x, 32)
        with torch.autocast(device.type, dtype=autocast[1], enabled=autocast[0]):
            logits = model(x)
        pred = logits[..., :h, :w].argmax(1).cpu()
        cm += confusion_matrix(pred, split.get_masks(idx), num_classes, ignore_index)
        if progress is not None:
            progress(idx[-1] + 1, len(split))
    return scores_from_confusion(cm)


@dataclass
class TestResult:
    split: str  # "test", or "val" when the data set gave no test split
    tiles: int
    how: SceneEval

    @property
    def scores(self) -> SegScores:
        return self.how.scores


def test_scores(model: torch.nn.Module, splits: Any, device: torch.device, tile: int, overlap: float,
                card: dict[str, Any] | None = None, progress: Callable[[int, int], None] | None = None) -> TestResult:
    """Scores of a model on the test split (the validation split when there is none), over whole scenes where
    the split holds whole scenes (see :mod:`core.seg.scene_eval`), else over its tiles."""
    which = "test" if len(splits.test) else "val"
    split = splits.test if which == "test" else splits.val
    others = [splits.train_all if splits.train_all is not None else splits.train,
              splits.val if which == "test" else splits.test]
    n = len(splits.classes)
    if whole_scenes_possible(split, others):
        how = evaluate_scenes(model, split, n, splits.ignore_index, device=device, tile=tile, overlap=overlap,
                              card=card, progress=progress)
    else:
        scores = evaluate(model, split, n, splits.ignore_index, device)
        how = SceneEval(scores, "tiles", [], 0, 0, 0.0)
    return TestResult(which, len(split), how)
