"""Which pixels of an uploaded image hold no data, so they are neither classified nor counted in the areas.

Why: scanned or reprojected tiles come with white or black collars, GeoTIFFs declare a nodata value or carry a
mask, PNGs an alpha channel; a model labels all of them ("land") and the areas table then counts the collar.

Rules (True = no data):
- what the file declares: alpha 0, a GeoTIFF's internal or per-dataset mask, NaN, the nodata value of non-8-bit
  data (``LoadedImage.declared_nodata``);
- an 8-bit nodata value only where those pixels reach the image border (orthophotos declare nodata=255 while
  their white roofs are 255 too);
- uniform borders: near-white (all bands >= 250) or near-black (all <= 5) regions that hold a corner of the image
  and cover at least ``MIN_BORDER_SHARE`` of it. A scanner's margin runs along a whole side and a reprojection's
  wedges fill the corners, so both hold one; a white roof or a sunlit concrete yard cut by the image edge in the
  middle of a side holds none (one such yard, 1.9 % of a Dubai image, was dropped as a collar before the corner rule).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..imaging.imageio import LoadedImage

MIN_BORDER_SHARE = 0.01
WHITE, BLACK = 250, 5


def _border_connected(candidate: np.ndarray, min_pixels: int = 1) -> np.ndarray:
    """The parts of ``candidate`` connected to the image border (each part at least ``min_pixels``)."""
    border = np.concatenate([candidate[0], candidate[-1], candidate[:, 0], candidate[:, -1]])
    if not border.any():  # the usual case, and cheap: labelling a 50 MP image takes seconds
        return np.zeros_like(candidate)
    labels, n = ndimage.label(candidate)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    if len(edge) == 0:
        return np.zeros_like(candidate)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.zeros(n + 1, bool)
    keep[edge[sizes[edge] >= min_pixels]] = True
    return keep[labels]


CORNERS = ([0, 0, -1, -1], [0, -1, 0, -1])


def _corner_connected(candidate: np.ndarray, min_pixels: int) -> np.ndarray:
    """The parts of ``candidate`` that hold a corner of the image, each at least ``min_pixels``."""
    labels, n = ndimage.label(candidate)
    held = labels[CORNERS]
    held = held[held > 0]
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.zeros(n + 1, bool)
    keep[held[sizes[held] >= min_pixels]] = True
    return keep[labels]


def uniform_borders(rgb: np.ndarray, min_share: float = MIN_BORDER_SHARE) -> np.ndarray:
    """Near-white or near-black regions that hold a corner of the image, each at least ``min_share`` of it."""
    min_px = max(1, int(min_share * rgb.shape[0] * rgb.shape[1]))
    out = np.zeros(rgb.shape[:2], bool)
    corners = rgb[CORNERS]
    if (corners >= WHITE).all(axis=1).any():  # only then is the whole image worth a look (labelling 50 MP: seconds)
        out |= _corner_connected((rgb >= WHITE).all(axis=2), min_px)
    if (corners <= BLACK).all(axis=1).any():
        out |= _corner_connected((rgb <= BLACK).all(axis=2), min_px)
    return out


def nodata_mask(loaded: LoadedImage, borders: bool = True) -> np.ndarray:
    """(H, W) bool, True where the image holds no data, by the rules of this module's docstring."""
    h, w = loaded.shape
    mask = np.zeros((h, w), bool)
    if loaded.declared_nodata is not None:
        mask |= loaded.declared_nodata
    if loaded.nodata_value_pixels is not None:
        mask |= _border_connected(loaded.nodata_value_pixels)
    if borders:
        mask |= uniform_borders(loaded.rgb)
    return mask
