"""Training-time augmentation for segmentation, batched on tensors (the usual MMSegmentation pipeline).

Why batched: as for pretraining (``augment.py``), per-image PIL transforms in DataLoader workers cost more CPU than
a small model on a GPU. One batch of uint8 tiles and their masks becomes crops with one ``grid_sample`` (images,
bilinear) and one gather (masks, nearest), then one 3x3 colour map per image.

Per image: a random rescale by a factor in ``scale`` (0.5-2.0), a random ``crop_size`` crop (where the rescaled
image is smaller, the crop is padded: reflected image, ``ignore_index`` in the mask), horizontal and vertical flips,
and a mild photometric distortion (brightness, contrast, saturation, hue, each applied with probability 0.5),
then ImageNet normalisation. Random numbers are drawn on the CPU from the given generator, so the result depends
only on the generator's state, not on the device. Downscaling is bilinear without antialiasing (at most 2x with
the default scales).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..imaging.bands import RGB, rgb_positions
from .augment import _LUMA, band_jitter, hue_saturation_matrices, normalise, split_colour, to_float


@torch.no_grad()
def eval_transform(images: Tensor, bands: Sequence[str] | None = None) -> Tensor:
    """Evaluation input: uint8 (B, C, H, W) (or float in [0, 1]) to float32 normalised as the encoder was trained
    (``bands``: the channels' names, default R, G, B); no randomness."""
    return normalise(to_float(images, 3 if bands is None else len(bands)), bands)


def jitter_strengths(strength: float) -> dict[str, float]:
    """Photometric ranges for a strength (1 = MMSegmentation's mild defaults), each capped where it stays an image."""
    if not 0 <= strength:
        raise ValueError(f"colour jitter strength must be >= 0, got {strength}")
    return {"brightness": min(0.125 * strength, 0.9), "contrast": min(0.25 * strength, 0.9),
            "saturation": min(0.25 * strength, 1.0), "hue": min(0.05 * strength, 0.5)}


class SegAugment(nn.Module):
    """Random rescale + crop + flips + mild photometric distortion of images and masks together.

    ``bands`` names the channels (default R, G, B): geometry acts on all, the colour map on R, G, B only.
    ``forward(images uint8 (B, C, H, W), masks int64 (B, H, W), generator) -> (float32 (B, 3, S, S) normalised,
    int64 (B, S, S))`` with ``S = crop_size``. Masks are resampled with nearest neighbour and padded with
    ``ignore_index``; images are resampled bilinearly and padded by reflection.
    """

    def __init__(self, crop_size: int, scale: tuple[float, float] = (0.5, 2.0), flip: bool = True,
                 photometric: bool = True, ignore_index: int = 255, brightness: float = 0.125,
                 contrast: float = 0.25, saturation: float = 0.25, hue: float = 0.05,
                 bands: Sequence[str] | None = None):
        super().__init__()
        self.bands = tuple(bands) if bands is not None else RGB
        self.rgb = rgb_positions(self.bands)
        if crop_size < 1:
            raise ValueError(f"crop_size must be >= 1, got {crop_size}")
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        self.crop_size, self.scale = int(crop_size), (float(scale[0]), float(scale[1]))
        self.flip, self.photometric, self.ignore_index = bool(flip), bool(photometric), int(ignore_index)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def extra_repr(self) -> str:
        return (f"crop_size={self.crop_size}, scale={self.scale}, flip={self.flip}, "
                f"photometric={self.photometric}, ignore_index={self.ignore_index}")

    def eval_transform(self, images: Tensor) -> Tensor:
        return eval_transform(images, self.bands)

    def _sample(self, b: int, h: int, w: int, g: torch.Generator | None) -> dict[str, Tensor]:
        """Every random number of a batch, drawn on the CPU in a fixed order."""
        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=g, dtype=torch.float64)

        s = self.crop_size
        lo, hi = self.scale
        scale = lo + (hi - lo) * rand(b)
        pos = rand(b, 2)
        flips = rand(b, 2) < 0.5
        apply = rand(b, 4) < 0.5
        factors = 2 * rand(b, 4) - 1
        if not self.flip:
            flips[:] = False
        # crop origin in whole rescaled pixels (so scale 1 copies pixels exactly); negative where the rescaled
        # image is smaller than the crop (padding)
        oy = (pos[:, 0] * (h * scale - s)).round()
        ox = (pos[:, 1] * (w * scale - s)).round()
        return dict(scale=scale, ox=ox, oy=oy, flips=flips, apply=apply, factors=factors)

    def forward(self, images: Tensor, masks: Tensor, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor]:
        x = to_float(images, len(self.bands))
        b, _, h, w = x.shape
        if masks.shape != (b, h, w):
            raise ValueError(f"masks must have shape {(b, h, w)}, got {tuple(masks.shape)}")
        p = self._sample(b, h, w, generator)
        s, dev = self.crop_size, x.device
        u = torch.arange(s, dtype=torch.float64) + 0.5  # output pixel centres
        sx = (p["ox"].unsqueeze(1) + u) / p["scale"].unsqueeze(1)  # (B, S) source coordinates, pixel units
        sy = (p["oy"].unsqueeze(1) + u) / p["scale"].unsqueeze(1)
        sx = torch.where(p["flips"][:, :1], sx.flip(1), sx)
        sy = torch.where(p["flips"][:, 1:], sy.flip(1), sy)
        gx, gy = (2 * sx / w - 1).float(), (2 * sy / h - 1).float()
        grid = torch.stack([gx.unsqueeze(1).expand(b, s, s), gy.unsqueeze(2).expand(b, s, s)], dim=-1)
        out = F.grid_sample(x, grid.to(dev), mode="bilinear", padding_mode="reflection", align_corners=False)
        ix, iy = sx.floor().long(), sy.floor().long()
        valid = ((iy >= 0) & (iy < h)).unsqueeze(2) & ((ix >= 0) & (ix < w)).unsqueeze(1)
        bi = torch.arange(b).view(b, 1, 1)
        idx = (bi.to(masks.device), iy.clamp(0, h - 1).unsqueeze(2).to(masks.device),
               ix.clamp(0, w - 1).unsqueeze(1).to(masks.device))
        m = masks.long()[idx]
        m = torch.where(valid.to(masks.device), m, torch.full_like(m, self.ignore_index))
        if self.photometric:
            out = self._colour(out, p)
        return normalise(out, self.bands), m

    def _colour(self, v: Tensor, p: dict[str, Tensor]) -> Tensor:
        """The colour map on R, G, B; brightness and contrast alone on other bands (NIR, ...)."""
        def others(x: Tensor) -> Tensor:
            n, dev = x.shape[0], x.device
            on, f = p["apply"].to(dev), p["factors"].float().to(dev)
            bri = torch.where(on[:, 0], 1 + self.brightness * f[:, 0], torch.ones(n, device=dev))
            con = torch.where(on[:, 1], 1 + self.contrast * f[:, 1], torch.ones(n, device=dev))
            return band_jitter(x, bri, con)

        return split_colour(v, self.rgb, lambda x: self._rgb_colour(x, p), others)

    def _rgb_colour(self, v: Tensor, p: dict[str, Tensor]) -> Tensor:
        """Brightness, contrast, saturation, hue (in this order, each with probability 0.5) as one affine map."""
        n, dev = v.shape[0], v.device
        on, f = p["apply"].to(dev), p["factors"].float().to(dev)
        bri = torch.where(on[:, 0], 1 + self.brightness * f[:, 0], torch.ones(n, device=dev))
        con = torch.where(on[:, 1], 1 + self.contrast * f[:, 1], torch.ones(n, device=dev))
        sat = torch.where(on[:, 2], 1 + self.saturation * f[:, 2], torch.ones(n, device=dev))
        ang = torch.where(on[:, 3], 2 * math.pi * self.hue * f[:, 3], torch.zeros(n, device=dev))
        eye = torch.eye(3, device=dev).expand(n, 3, 3)
        luma = torch.tensor(_LUMA, device=dev)
        hue_m, sat_m = hue_saturation_matrices(ang, sat)
        m = bri.view(n, 1, 1) * eye
        mean_grey = (v.mean(dim=(2, 3)) @ luma) * bri  # grey level after brightness
        o = ((1 - con) * mean_grey).unsqueeze(1).expand(n, 3)  # contrast blends towards the mean grey
        m = con.view(n, 1, 1) * m
        m, o = sat_m @ m, (sat_m @ o.unsqueeze(2)).squeeze(2)
        m, o = hue_m @ m, (hue_m @ o.unsqueeze(2)).squeeze(2)
        out = torch.bmm(m, v.flatten(2)) + o.unsqueeze(2)
        return out.view_as(v).clamp_(0, 1)
