"""A near-infrared band for the synthetic tiles, derived from a tile's RGB and labels.

Why: real multi-band orthophotos (Potsdam's RGBIR) carry NIR because it separates what RGB confuses: healthy
vegetation reflects strongly in the near-infrared (leaf cell structure), while asphalt, dark roofs, shadowed
paving and water are dark there, whatever their visible colour. A green-painted roof or a grey-green lawn look
alike in RGB but not in NIR. The synthetic set imitates that, so multi-band runs have something real to learn:

* vegetation (low vegetation, tree) bright (about 160-215), impervious surfaces dark (about 35-70), buildings
  middling (about 70-120, by roof material: red clay tiles brighter, bitumen darker), cars dark to mid, clutter
  (bare soil here) mid;
* texture from the RGB luma within each class (small weight, so shadows and texture carry over), a 3x3 blur at
  class borders (the RGB is blurred by its optics too), a per-tile illumination gain and mild sensor noise.

Deterministic in (rgb, labels, seed); vectorised numpy, a few milliseconds per 256 px tile.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .synthetic_canvas import BUILDING, CLASSES

NIR_VERSION = 1  # bump when the look of the band changes (recorded next to the cached nir.npy)

# per class, in CLASSES order: NIR level, weight of the luma texture
#   impervious surfaces, building, low vegetation, tree, car, clutter
_LEVEL = np.array([52.0, 68.0, 182.0, 198.0, 72.0, 118.0], np.float32)
_TEXTURE = np.array([0.15, 0.15, 0.3, 0.3, 0.3, 0.25], np.float32)
_ROOF_LUMA, _ROOF_RED = 0.1, 0.3  # buildings: brighter materials and reddish (clay) roofs are brighter in NIR
assert len(_LEVEL) == len(CLASSES)


def nir_seed(seed: int, index: int) -> int:
    """The noise seed of tile ``index``'s NIR band in a dataset with ``seed`` (a hash: tiles do not share noise)."""
    digest = hashlib.blake2b(f"synthetic-nir:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _blur3(a: np.ndarray) -> np.ndarray:
    """A separable [1, 2, 1] / 4 blur with edge padding (softens class borders like the RGB optics)."""
    p = np.pad(a, 1, mode="edge")
    a = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
    return 0.25 * a[:, :-2] + 0.5 * a[:, 1:-1] + 0.25 * a[:, 2:]


def nir_band(rgb: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """The near-infrared band (H, W) uint8 of one tile from its RGB (H, W, 3) uint8 and labels (H, W) uint8."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or labels.shape != rgb.shape[:2]:
        raise ValueError(f"nir_band: need rgb (H, W, 3) and labels (H, W), got {rgb.shape} and {labels.shape}")
    rng = np.random.default_rng(seed)
    lab = np.asarray(labels, np.intp)
    c = np.asarray(rgb, np.float32)
    r, b = c[..., 0], c[..., 2]
    luma = 0.299 * r + 0.587 * c[..., 1] + 0.114 * b
    k = len(CLASSES)
    counts = np.bincount(lab.ravel(), minlength=k)[:k]
    sums = np.bincount(lab.ravel(), weights=luma.ravel(), minlength=k)[:k]
    class_luma = (sums / np.maximum(counts, 1)).astype(np.float32)
    nir = _LEVEL[lab] + _TEXTURE[lab] * (luma - class_luma[lab])  # texture: zero mean within each class
    roof = lab == BUILDING
    if roof.any():  # material, per pixel of the roof: the same on one roof, different between roofs
        nir[roof] += _ROOF_LUMA * luma[roof] + _ROOF_RED * np.maximum(r[roof] - b[roof], 0)
    nir = _blur3(nir)
    nir *= np.float32(rng.uniform(0.94, 1.06))  # illumination of the tile
    noise = rng.random(nir.shape, dtype=np.float32)  # uniform: a third the cost of normal, as mild
    nir += (noise - np.float32(0.5)) * np.float32(rng.uniform(1.5, 3.5) * 12 ** 0.5)  # std 1.5-3.5
    np.clip(nir + 0.5, 0, 255, out=nir)
    return nir.astype(np.uint8)
