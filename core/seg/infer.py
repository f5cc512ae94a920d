"""Sliding-window segmentation of images of any size, with memory bounded by one strip of tiles.

How ``predict`` works:

- Windows. Each axis gets ``n = ceil((L - T) / (T - overlap)) + 1`` windows of side ``T`` spread evenly from 0 to
  ``L - T`` (so neighbours overlap by at least the requested amount and the last window ends on the border; no
  padding at borders). An axis shorter than the tile gets one window of the axis length rounded up to a multiple
  of 32 (what the networks need), the few extra pixels filled by reflection.
- Blending. Every window's logits are multiplied by a separable weight ``w(y) * w(x)``: a triangular ramp that
  rises from ``1 / (overlap + 1)`` at the window edge to 1 at ``overlap`` pixels in, never zero, so border pixels
  that only one window sees are still defined. The blended logit at a pixel is
  ``sum_k w_k * logit_k / sum_k w_k``. Because the window grid is a product of two axis grids and the weight is
  separable, the denominator is ``W_y(y) * W_x(x)`` > 0, which cannot change the argmax; ``predict`` therefore
  takes the argmax of the numerator alone, and ``predict_logits`` divides (it is also the plain, full-image
  reference the tests compare the strip path against).
- Memory. ``predict`` walks the image in horizontal strips: windows go in row-major order, in batches that
  may straddle two rows of windows (so every forward pass is full). It keeps a rolling (C, ~T + stride, W)
  float32 accumulator on the model's device: once a row of windows is done, the rows that no later window
  touches are turned into class indices and written to the uint8 output, and the rows still shared with the next
  row of windows move to the top. For a 10000 x 10000 image, 6 classes and T = 512 that is about 215 MB, beside
  the 300 MB image and the 100 MB mask; no (C, H, W) map is ever held.
- Inference runs under ``torch.inference_mode()`` with the model in eval mode; inputs are scaled to [0, 1] and
  normalised with the card's mean and std. ``tta_flip`` adds a horizontally flipped pass and averages the logits.

Also here: ``class_areas`` (pixels, percent and square metres per class), ``colorize`` and ``overlay``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..imaging.colours import display_rgb
from ..data.augment import IMAGENET_MEAN, IMAGENET_STD

NODATA = 255  # mask value of pixels without data (transparent in overlays, left out of the areas)
MULTIPLE = 32  # window sides are multiples of this (smp encoders downsample by 32)
Progress = Callable[[int, int], None]

# A fallback palette for classes without a colour (and for indices past the class list).
_FALLBACK = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                      [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
                      [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
                      [170, 255, 195]], np.uint8)


# ------------------------------------------------------------------------------------------------ geometry
def overlap_pixels(overlap: float, tile: int) -> int:
    """``overlap`` below 1 is a fraction of the tile, from 1 on a number of pixels; must leave a stride >= 1."""
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not math.isfinite(overlap) \
            or overlap < 0:
        raise ValueError(f"overlap must be a fraction in [0, 1) or a number of pixels, got {overlap!r}")
    if overlap >= 1 and overlap != int(overlap):  # 1.5 is neither: a typo for a fraction, or half a pixel
        raise ValueError(f"overlap {overlap!r}: below 1 it is a fraction of the tile (0.25 = a quarter), from 1 on "
                         "a whole number of pixels")
    px = int(round(overlap * tile)) if overlap < 1 else int(round(overlap))
    if px >= tile:
        raise ValueError(f"overlap of {px} pixels leaves no stride for tile {tile}")
    return px


def check_tile(tile: int) -> int:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < MULTIPLE or tile % MULTIPLE:
        raise ValueError(f"tile must be a multiple of {MULTIPLE} (at least {MULTIPLE}), got {tile!r}")
    return tile


def axis_positions(length: int, tile: int, overlap_px: int) -> list[int]:
    """Window starts along one axis: evenly spread from 0 to ``length - tile``, overlapping >= ``overlap_px``."""
    if length <= tile:
        return [0]
    stride = tile - overlap_px
    n = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _axis_tile(length: int, tile: int) -> int:
    return min(tile, -(-length // MULTIPLE) * MULTIPLE)


def ramp(length: int, overlap_px: int) -> np.ndarray:
    """1-D blending weight: linear from 1/(overlap+1) at the edges to 1 at ``overlap_px`` in; never zero."""
    if overlap_px <= 0:
        return np.ones(length, np.float32)
    i = np.arange(length, dtype=np.float32)
    return np.minimum(1.0, np.minimum(i + 1, length - i) / (overlap_px + 1)).astype(np.float32)


def _axis(length: int, tile: int, overlap_px: int) -> tuple[int, list[int], int]:
    """(window side, window starts, blending overlap) along one axis; one window needs no blending."""
    side = _axis_tile(length, tile)
    positions = axis_positions(length, side, overlap_px)
    return side, positions, overlap_px if len(positions) > 1 else 0


def count_windows(height: int, width: int, tile: int = 512, overlap: float = 0.25) -> int:
    ov = overlap_pixels(overlap, check_tile(tile))
    return len(_axis(height, tile, ov)[1]) * len(_axis(width, tile, ov)[1])


class _Plan:
    """Everything ``predict`` and ``predict_logits`` share: window geometry, weights, normalisation, forward."""

    def __init__(self, model: nn.Module, image: np.ndarray, tile: int, overlap: float, batch_size: int,
                 tta_flip: bool, device: str | torch.device | None, num_classes: int | None,
                 mean: Sequence[float] | None, std: Sequence[float] | None, card: dict[str, Any] | None) -> None:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.dtype != np.uint8:
            desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"image must be a (H, W, C) uint8 array, got {desc}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image has no pixels: {image.shape}")
        check_tile(tile)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if card is not None:
            norm = card.get("normalization") or {}
            mean = mean if mean is not None else norm.get("mean")
            std = std if std is not None else norm.get("std")
            if num_classes is None and card.get("classes"):
                num_classes = len(card["classes"])
        mean = list(mean) if mean is not None else list(IMAGENET_MEAN)
        std = list(std) if std is not None else list(IMAGENET_STD)
        if len(mean) != image.shape[2] or len(std) != image.shape[2]:
            raise ValueError(f"the image has {image.shape[2]} band(s) but the model reads {len(mean)}")
        if device is None:
            param = next(iter(model.parameters()), None)
            device = param.device if param is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.height, self.width = int(image.shape[0]), int(image.shape[1])
        ov = overlap_pixels(overlap, tile)
        self.th, self.ys, oy = _axis(self.height, tile, ov)
        self.tw, self.xs, ox = _axis(self.width, tile, ov)
        self.weight = torch.from_numpy(np.outer(ramp(self.th, oy), ramp(self.tw, ox))).to(self.device)
        pad_h, pad_w = max(0, self.th - self.height), max(0, self.tw - self.width)
        if pad_h or pad_w:  # only for an axis shorter than the tile: fewer than 32 extra pixels
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect" if min(image.shape[:2]) > 1
                           else "edge")
        self.image = image
        self.batch_size = batch_size
        self.tta_flip = tta_flip
        self.num_classes = num_classes
        c = len(mean)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1) * 255.0
        self.total = len(self.ys) * len(self.xs)

    def _net(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out.float()

    def forward(self, windows: list[np.ndarray]) -> Tensor:
        """uint8 (h, w, bands) windows -> (B, classes, h, w) float32 logits on the device."""
        batch = torch.from_numpy(np.stack(windows)).to(self.device, non_blocking=True)
        x = batch.permute(0, 3, 1, 2).float().sub_(self.mean).div_(self.std).contiguous()
        logits = self._net(x)
        if self.tta_flip:
            logits = logits.add_(self._net(x.flip(-1)).flip(-1)).mul_(0.5)
        if self.num_classes is None:
            self.num_classes = int(logits.shape[1])
        elif logits.shape[1] != self.num_classes:
            raise ValueError(f"the model outputs {logits.shape[1]} classes, expected {self.num_classes}")
        return logits

    def batches(self, positions: list[tuple[int, int]]) -> Iterator[tuple[list[tuple[int, int]], Tensor]]:
        for i in range(0, len(positions), self.batch_size):
            chunk = positions[i:i + self.batch_size]
            wins = [self.image[y:y + self.th, x:x + self.tw] for y, x in chunk]
            yield chunk, self.forward(wins)


# ------------------------------------------------------------------------------------------------ inference
def _argmax_classes(scores: Tensor) -> Tensor:
    """argmax over dim 0 of a (C, h, w) slice as uint8, first index on ties. A running maximum over the classes:
    on the CPU ``argmax(0)`` of a strided slice is several times slower than these C element-wise passes."""
    best = scores[0].clone()
    idx = torch.zeros(best.shape, dtype=torch.uint8, device=scores.device)
    for k in range(1, scores.shape[0]):
        better = scores[k] > best
        idx.masked_fill_(better, k)
        torch.maximum(best, scores[k], out=best)
    return idx


def predict(model: nn.Module, image: np.ndarray, *, tile: int = 512, overlap: float = 0.25, batch_size: int = 4,
            tta_flip: bool = False, device: str | torch.device | None = None, progress: Progress | None = None,
            num_classes: int | None = None, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None, card: dict[str, Any] | None = None) -> np.ndarray:
    """Class indices (H, W) uint8 for an (H, W, C) uint8 image (RGB, or the card's bands), by blended sliding
    windows in strips.

    Args:
        model: a segmentation network returning (B, C, h, w) logits (a ``SegModel``); put in eval mode.
        tile: window side (a multiple of 32); overlap: a fraction of the tile (< 1) or pixels (>= 1).
        batch_size: windows per forward pass; tta_flip: also average a horizontally flipped pass.
        device: where to run (default: where the model's parameters are; the model is moved there).
        progress: called as ``progress(windows_done, windows_total)`` after every batch.
        num_classes: checked against the model's output when given (else taken from the card or the output).
        mean, std: per-channel normalisation of [0, 1] pixels; default the card's, else ImageNet's.
        card: a segmentation card, for the normalisation and the class count.
    """
    plan = _Plan(model, image, tile, overlap, batch_size, tta_flip, device, num_classes, mean, std, card)
    if plan.num_classes is not None and plan.num_classes > 256:
        raise ValueError(f"{plan.num_classes} classes do not fit a uint8 mask")
    height, width, th = plan.height, plan.width, plan.th
    out = np.empty((height, width), np.uint8)
    # Windows in row-major order; a batch may hold the end of one row of windows and the start of the next, so
    # every forward pass is full. ``acc`` holds rows [base, base + acc rows); it grows to cover the lowest window
    # of a batch (th rows plus a stride when a batch straddles two rows of windows).
    stream = [(k, y, x) for k, y in enumerate(plan.ys) for x in plan.xs]
    acc: Tensor | None = None
    base = 0
    with torch.inference_mode():
        for i in range(0, len(stream), plan.batch_size):
            chunk = stream[i:i + plan.batch_size]
            logits = plan.forward([plan.image[y:y + th, x:x + plan.tw] for _, y, x in chunk])
            need = chunk[-1][1] + th - base
            if acc is None or acc.shape[1] < need:
                grown = torch.zeros((logits.shape[1], need, plan.image.shape[1]), dtype=torch.float32,
                                    device=plan.device)
                if acc is not None:
                    grown[:, :acc.shape[1]] = acc
                acc = grown
            logits.mul_(plan.weight)
            for j, (_, y, x) in enumerate(chunk):
                acc[:, y - base:y - base + th, x:x + plan.tw] += logits[j]
            done = i + len(chunk)
            if progress is not None:
                progress(done, plan.total)
            # Rows above the next window's row are final: no later window touches them.
            finished = min(plan.ys[stream[done][0]], height) if done < len(stream) else height
            if finished > base:
                out[base:finished] = _argmax_classes(acc[:, :finished - base, :width]).cpu().numpy()
                live = acc.shape[1] - (finished - base)  # move the rows still open to the top, clear the rest
                if live > 0:
                    acc[:, :live] = acc[:, finished - base:].clone()
                acc[:, max(live, 0):] = 0
                base = finished
    return out


def predict_logits(model: nn.Module, image: np.ndarray, *, tile: int = 512, overlap: float = 0.25,
                   batch_size: int = 4, tta_flip: bool = False, device: str | torch.device | None = None,
                   progress: Progress | None = None, num_classes: int | None = None,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   card: dict[str, Any] | None = None) -> np.ndarray:
    """Blended logits (C, H, W) float32 with the same windows and weights as ``predict``, over the whole image
    at once (a full-size accumulator and an explicitly summed weight): for small images and as a reference."""
    plan = _Plan(model, image, tile, overlap, batch_size, tta_flip, device, num_classes, mean, std, card)
    hp, wp = plan.image.shape[:2]
    acc: Tensor | None = None
    wsum = torch.zeros((hp, wp), dtype=torch.float32, device=plan.device)
    positions = [(y, x) for y in plan.ys for x in plan.xs]
    done = 0
    with torch.inference_mode():
        for chunk, logits in plan.batches(positions):
            if acc is None:
                acc = torch.zeros((logits.shape[1], hp, wp), dtype=torch.float32, device=plan.device)
            for j, (y, x) in enumerate(chunk):
                acc[:, y:y + plan.th, x:x + plan.tw] += logits[j] * plan.weight
                wsum[y:y + plan.th, x:x + plan.tw] += plan.weight
            done += len(chunk)
            if progress is not None:
                progress(done, plan.total)
        assert acc is not None
        return (acc / wsum)[:, :plan.height, :plan.width].cpu().numpy()


# ------------------------------------------------------------------------------------------------ reporting
def class_areas(mask: np.ndarray, classes: Sequence[dict[str, Any] | str],
                pixel_size_m: float | None = None) -> list[dict[str, Any]]:
    """Per class: name, pixels, percent of the image's data pixels, square metres (None when the pixel size is
    unknown). ``NODATA`` pixels (with fewer than 256 classes) are left out, percent included.

    Indices past the class list (a mismatched mask) are reported as ``class <i>``."""
    mask = np.asarray(mask)
    counts = np.zeros(256, np.int64)
    flat = mask.reshape(-1)
    for i in range(0, flat.size, 1 << 24):  # bincount casts to int64: do it in slices
        counts += np.bincount(flat[i:i + (1 << 24)].astype(np.uint8, copy=False), minlength=256)
    names = [c["name"] if isinstance(c, dict) else str(c) for c in classes]
    if len(names) < 256:
        counts[NODATA] = 0
    n = max(len(names), int(np.flatnonzero(counts).max()) + 1 if counts.any() else 0)
    total = max(1, int(counts.sum()))
    px_area = pixel_size_m ** 2 if pixel_size_m else None
    rows = []
    for i in range(n):
        pixels = int(counts[i])
        rows.append({"name": names[i] if i < len(names) else f"class {i}", "pixels": pixels,
                     "percent": 100.0 * pixels / total,
                     "square_metres": pixels * px_area if px_area is not None else None})
    return rows


def palette(classes: Sequence[dict[str, Any] | str]) -> np.ndarray:
    """(256, 3) uint8 colours: the classes' display colours (``imaging.colours``), else a fixed fallback palette."""
    pal = np.tile(_FALLBACK, (256 // len(_FALLBACK) + 1, 1))[:256].copy()
    for i, c in enumerate(list(classes)[:256]):
        rgb = display_rgb(c)
        if rgb is not None:
            pal[i] = rgb
    if len(list(classes)) < 256:
        pal[NODATA] = 0
    return pal


def colorize(mask: np.ndarray, classes: Sequence[dict[str, Any] | str]) -> np.ndarray:
    """(H, W, 3) uint8 colour image of a class-index mask."""
    return palette(classes)[np.asarray(mask, dtype=np.uint8)]


def overlay(rgb: np.ndarray, mask: np.ndarray, classes: Sequence[dict[str, Any] | str],
            opacity: float = 0.5) -> np.ndarray:
    """The image with the class colours blended over it at ``opacity``; no-data pixels left as they are (done in
    row slices to bound memory)."""
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image {rgb.shape[:2]} and mask {mask.shape} differ in size")
    a = float(min(max(opacity, 0.0), 1.0))
    pal = palette(classes).astype(np.float32)
    out = np.empty(rgb.shape[:2] + (3,), np.uint8)
    step = max(1, (1 << 22) // max(1, rgb.shape[1]))
    for y in range(0, rgb.shape[0], step):
        img = rgb[y:y + step, :, :3].astype(np.float32)
        m = mask[y:y + step]
        alpha = np.where(m == NODATA, 0.0, a)[..., None] if len(pal) and len(classes) < 256 else a
        blend = img * (1.0 - alpha) + pal[m] * alpha
        out[y:y + step] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    return out
