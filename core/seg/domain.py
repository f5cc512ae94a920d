"""How far an image is from what a segmentation model was trained on: the card's domain fingerprint and scores.

Why: a model trained on one city's aerial tiles answers confidently on farmland satellite scenes or 10 cm forest
canopy, and nothing in its output says so. A fingerprint, computed once from the model's own training tiles and
kept in its card, lets every interface score an image against it, warn in words, and pick the best-fitting model.

The fingerprint keeps, for up to ``MAX_TILES`` training tiles (centre crops of ``FEATURE_SIDE`` px, or of the tiles'
own side when they are smaller: a mirrored 64 px tile is a kaleidoscope no real crop resembles), two small
descriptions, and for each the spread of the training tiles' own nearest-neighbour distances:

- content: the encoder's last stage, average-pooled, projected on its ``COMPONENTS`` main axes over the training
  tiles and whitened (mean, axes and scales kept);
- colour: a 4x4x4 RGB histogram per tile.

Why nearest neighbours and not one mean: training sets are mixtures (water tiles, desert tiles, city tiles); an
image is in the domain when it looks like *some* training tiles, not like their average. A crop's distance is the
mean distance to its ``NEIGHBOURS`` nearest training tiles; the image's is the median over up to ``MAX_CROPS``
crops (crops mostly no-data are skipped). The training tiles' own distances (leave-one-out) are kept as 101
quantiles. The image's score is the share of training tiles at least as far from their neighbours as the image
is (1 = typical, 0 = farther than every training tile), the lower of content and colour. It is out of the domain
when either distance exceeds ``OOD_MARGIN`` times the ``OOD_PERCENTILE``-th percentile of the training tiles'.
Measured on the real data (``docs/model_cards.md``): unseen Dubai and DeepGlobe scenes score 0.07-0.52 against
their own models, NEON 10 cm forest and orchards at most 0.01 against every shipped model.
"""
from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.augment import normalise
from ..imaging.band_preview import preview
from ..imaging.bands import card_bands, is_rgb

FINGERPRINT_VERSION = 2
FEATURE_SIDE = 256
MIN_FEATURE_SIDE = 32  # one cell of a stride-32 encoder's last stage
MAX_CROPS = 12  # crops scored per image and model: about 4 % of a 2448 px scene's forward passes
MAX_TILES = 300
COMPONENTS = 32
NEIGHBOURS = 5
COLOUR_BINS = 4
OOD_MARGIN = 1.0
OOD_PERCENTILE = 98  # out of the domain: farther than this percentile of the training tiles' own distances
QUANTILES = np.linspace(0.0, 1.0, 101)
MIN_SIDE_SHARE = 4  # an image narrower than FEATURE_SIDE / this is too small to score (see _too_small)
TOO_LITTLE = "the image holds too little valid imagery to compare"  # most of the image is no data
IMAGE_REASONS = ("the image is too small", TOO_LITTLE)  # unknown because of the image, not of the model
FIT_SCALE = ("domain fit: the share of the model's own training tiles that lie farther from their nearest training "
             "tiles than this image does (by encoder features and by colours, the lower of the two): 0.5 is as "
             f"typical as a middling training tile, 1 more typical than all; below {1 - OOD_PERCENTILE / 100:.2f} "
             f"it is farther than {OOD_PERCENTILE} % of them, out of the model's domain, and warned. A grey or very "
             "dark image is out of an RGB model's domain and warned whatever its fit: the fit cannot see those")
FIT_REASONS = ("its content is farther", "its colours are unlike")  # the fit's own reasons (score_image)
DATA_KINDS = ("real", "generated")  # a card's ``domain.data_kind``: imagery of the ground, or scenes a program made


@dataclass
class DomainScore:
    """An image against one model's fingerprint. ``known`` is False for a card without a fingerprint."""

    known: bool
    score: float | None = None
    distance: float | None = None
    fit: float | None = None  # distance / the training tiles' median distance: comparable across models
    colour_distance: float | None = None
    in_domain: bool | None = None
    reasons: list[str] = field(default_factory=list)
    usable: bool = True  # False: the model cannot read this image at all (it lacks one of the model's bands)
    trained_on: str | None = None  # the model's training data in words (``training_data_text``), for the warning

    @property
    def overruled_fit(self) -> bool:
        """Out of the domain for a reason the fit cannot see (grey, dark, pixel size, generated training data) while
        the fit itself would have let the image in: a page that prints "domain fit 0.40" must say why it still warns."""
        return (self.in_domain is False and self.score is not None
                and not any(r.startswith(FIT_REASONS) for r in self.reasons))

    @property
    def unjudged_image(self) -> bool:
        """No fit because of the image itself (too small, too little valid imagery), not of the model."""
        return not self.known and bool(self.reasons) and self.reasons[0].startswith(IMAGE_REASONS)

    def warning(self) -> str | None:
        """One sentence for the user when the image is out of the model's domain, or too small to be held against
        it (None otherwise): what the model was trained on, why, and that areas are shares only. "Unlike", not "far
        from": a grey or very dark image is warned whatever its fit (a review read "far from" beside a fit of 0.40).
        The tiles, not the data set: a scene of the model's own data set may still be unlike its training tiles (a
        review read "outside what the model was trained on (DeepGlobe ...)" under a DeepGlobe validation scene)."""
        what = f" ({self.trained_on})" if self.trained_on else ""
        if self.in_domain is False:
            return (f"This image is unlike the tiles the model was trained on{what}: " + "; ".join(self.reasons)
                    + ". Treat its classes with care; areas are given as shares of the image only.")
        if self.unjudged_image:
            return (f"This image cannot be held against what the model was trained on{what}: "
                    + "; ".join(self.reasons) + ". Its classes are a guess, not a measurement; areas are given as "
                    "shares of the image only.")
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"known": self.known, "score": _round(self.score), "distance": _round(self.distance),
                "relative_distance": _round(self.fit), "colour_distance": _round(self.colour_distance),
                "in_domain": self.in_domain, "reasons": list(self.reasons), "trained_on": self.trained_on}


def training_data_kind(card: dict[str, Any]) -> str:
    """``generated`` for a model trained on scenes a program made (our synthetic set), ``real`` otherwise. Why a kind
    of its own: a fingerprint measures how close an image looks, not whether the model ever saw the ground; a real
    photo can sit near generated tiles by colour, and a synthetic model then answers it with confidence. Cards made
    before ``domain.data_kind`` existed are read from their training config."""
    domain = card.get("domain") if isinstance(card, dict) else None
    domain = domain if isinstance(domain, dict) else {}
    if domain.get("data_kind") in DATA_KINDS:
        return str(domain["data_kind"])
    config = card.get("config") if isinstance(card, dict) else None
    data = config.get("data") if isinstance(config, dict) else None
    if isinstance(data, dict) and data.get("name") == "synthetic":
        return "generated"
    if "generated" in str(domain.get("platform") or "").lower():
        return "generated"
    return "real"


def training_data_text(card: dict[str, Any]) -> str:
    """What a model was trained on, in a few words for warnings: platform and region, and the kind when generated."""
    domain = card.get("domain") if isinstance(card, dict) else None
    domain = domain if isinstance(domain, dict) else {}
    parts = [str(domain[k]) for k in ("platform", "region") if domain.get(k) and str(domain[k]) != "none (generated)"]
    text = "; ".join(parts) or str(card.get("training_data") or "data its card does not name")
    return text + (" (generated scenes, not imagery of the ground)" if training_data_kind(card) == "generated" else "")


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


# ------------------------------------------------------------------------------------------------ measuring
@torch.no_grad()
def pooled_features(model: nn.Module, crops: np.ndarray, device: torch.device | str = "cpu",
                    batch_size: int = 16, bands: Sequence[str] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(N, D) float64: the segmentation model's encoder, last stage, average-pooled, for (N, H, W, C) uint8 crops
    of the model's ``bands`` (default R, G, B); ``progress(done, total)`` after each batch."""
    encoder = model.encoder if hasattr(model, "encoder") else model
    scaled = getattr(model, "encoder_input", None)  # a model that resizes its input: the encoder reads it so
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        for i in range(0, len(crops), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[i:i + batch_size])).to(device)
            x = normalise(x.permute(0, 3, 1, 2).float() / 255.0, None if is_rgb(bands) else bands)
            x = (scaled(x) if scaled is not None else x).contiguous(memory_format=torch.channels_last)
            feats = encoder(x)  # channels-last: 1.2-1.4x faster on a CPU (2 cores), the features equal to 1e-6
            last = feats[-1] if isinstance(feats, (list, tuple)) else feats
            out.append(last.float().mean(dim=(2, 3)).cpu().double().numpy())
            if progress is not None:
                progress(min(i + batch_size, len(crops)), len(crops))
    finally:
        encoder.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0))


def rgb_part(pixels: np.ndarray, bands: Sequence[str] | None) -> np.ndarray:
    """The R, G, B channels of (..., C) pixels of ``bands`` (the first three where a colour band is missing): the
    colour half of the fingerprint is about what the eye sees."""
    if is_rgb(bands):
        return pixels[..., :3]
    return preview(pixels.reshape(-1, *pixels.shape[-2:]) if pixels.ndim > 3 else pixels,
                   list(bands or [])).reshape(*pixels.shape[:-1], 3)


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """Normalised 4x4x4 RGB histogram of (..., 3) uint8 pixels (an empty input gives zeros)."""
    p = np.asarray(pixels, np.uint8).reshape(-1, 3)
    if len(p) == 0:
        return np.zeros(COLOUR_BINS ** 3)
    q = (p // (256 // COLOUR_BINS)).astype(np.int64)
    idx = (q[:, 0] * COLOUR_BINS + q[:, 1]) * COLOUR_BINS + q[:, 2]
    h = np.bincount(idx, minlength=COLOUR_BINS ** 3).astype(np.float64)
    return h / h.sum()


def _knn(queries: np.ndarray, refs: np.ndarray, k: int = NEIGHBOURS, leave_one_out: bool = False) -> np.ndarray:
    """Mean Euclidean distance of each query to its k nearest references (rows of ``refs``)."""
    d = np.sqrt(np.maximum(((queries[:, None, :] - refs[None, :, :]) ** 2).sum(-1), 0.0))
    return _mean_nearest(d, k, leave_one_out)


def _knn_l1(queries: np.ndarray, refs: np.ndarray, k: int = NEIGHBOURS, leave_one_out: bool = False) -> np.ndarray:
    """The same with L1 distances (histograms)."""
    return _mean_nearest(np.abs(queries[:, None, :] - refs[None, :, :]).sum(-1), k, leave_one_out)


def _mean_nearest(d: np.ndarray, k: int, leave_one_out: bool) -> np.ndarray:
    if leave_one_out:
        np.fill_diagonal(d, np.inf)
    k = max(1, min(k, d.shape[1] - (1 if leave_one_out else 0)))
    return np.sort(d, axis=1)[:, :k].mean(axis=1)


def _plain(a: np.ndarray, decimals: int) -> list:
    """A JSON-friendly rounded copy (float64 first: rounded float32 prints with a dozen digits)."""
    return np.round(np.asarray(a, np.float64), decimals).tolist()


def _pack(a: np.ndarray) -> dict[str, Any]:
    """A float array as float16 bytes in base64: the card stays a small JSON (a list of 20,000 numbers would not)."""
    a = np.ascontiguousarray(np.asarray(a, np.float16))
    return {"dtype": "float16", "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _unpack(d: Any) -> np.ndarray:
    if isinstance(d, list):
        return np.asarray(d, np.float64)
    raw = base64.b64decode(d["b64"])
    return np.frombuffer(raw, np.float16).reshape(d["shape"]).astype(np.float64)


def _project(feats: np.ndarray, fp: dict[str, Any]) -> np.ndarray:
    scales = np.maximum(np.asarray(fp["scales"], np.float64), 1e-6)
    return ((feats - _unpack(fp["feature_mean"])) @ _unpack(fp["components"]).T) / scales


def fingerprint(model: nn.Module, tiles: Iterable[np.ndarray], device: torch.device | str = "cpu",
                note: str = "", bands: Sequence[str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The card's ``domain.fingerprint`` from (H, W, C) uint8 training tiles of ``bands`` (centre-cropped to
    ``fingerprint_side``, which the card keeps and scoring crops images at); colours from their R, G, B."""
    tiles = list(tiles)
    side = fingerprint_side(tiles)
    crops = np.stack([_centre(t, side) for t in tiles]) if tiles else np.zeros((0, side, side, 3), np.uint8)
    if len(crops) < 2:
        raise ValueError("a fingerprint needs at least 2 training tiles")
    feats = pooled_features(model, crops, device, bands=bands, progress=progress)
    crops = rgb_part(crops, bands)
    mean = feats.mean(axis=0)
    _, sing, axes = np.linalg.svd(feats - mean, full_matrices=False)
    # Axes with real spread only: with few tiles the trailing ones are noise, which whitening would blow up.
    k = max(1, min(COMPONENTS, len(feats) - 1, int((sing > 1e-3 * max(sing[0], 1e-12)).sum())))
    scales = np.maximum(sing[:k] / np.sqrt(len(feats)), 1e-6)
    fp: dict[str, Any] = {"version": FINGERPRINT_VERSION, "side": side, "tiles": int(len(crops)),
                          "note": note, "feature_mean": _plain(mean, 5), "components": _pack(axes[:k]),
                          "scales": [float(f"{v:.4g}") for v in scales]}
    points = _project(feats, fp)
    hists = np.stack([colour_histogram(c) for c in crops])
    fp.update(points=_pack(points), colour_histograms=_pack(hists),
              distance_quantiles=_plain(np.quantile(_knn(points, points, leave_one_out=True), QUANTILES), 4),
              colour_quantiles=_plain(np.quantile(_knn_l1(hists, hists, leave_one_out=True), QUANTILES), 4),
              colour_mean_rgb=_plain(crops.reshape(-1, 3).mean(axis=0), 1))
    return fp


def fingerprint_side(tiles: Sequence[np.ndarray]) -> int:
    """``FEATURE_SIDE``, or the smallest tile's side when the tiles are smaller (not below ``MIN_FEATURE_SIDE``):
    images are then scored in crops of the size the model was trained on, and a small-tile fingerprint costs a
    sixteenth of a padded one."""
    smallest = min((min(t.shape[:2]) for t in tiles), default=FEATURE_SIDE)
    return int(max(MIN_FEATURE_SIDE, min(FEATURE_SIDE, smallest)))


def _centre(tile: np.ndarray, side: int) -> np.ndarray:
    h, w = tile.shape[:2]
    if h < side or w < side:
        tile = np.pad(tile, ((0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), mode="reflect")
        h, w = tile.shape[:2]
    y, x = (h - side) // 2, (w - side) // 2
    return tile[y:y + side, x:x + side]


def image_crops(rgb: np.ndarray, valid: np.ndarray | None = None, side: int = FEATURE_SIDE,
                max_crops: int = MAX_CROPS) -> np.ndarray:
    """Up to ``max_crops`` crops on an even grid over the box that holds the valid pixels, skipping crops more than
    half no-data; (N, side, side, C). Why the box: a grid over the whole image put no crop inside a scene with a wide
    no-data collar, and its fit came out unknown, with no warning and areas in m², for imagery the model did not
    know."""
    if valid is not None and valid.any():
        rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
        box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        rgb, valid = rgb[box], valid[box]
    h, w = rgb.shape[:2]
    if h < side or w < side:
        return _centre(rgb, side)[None]
    ny, nx = max(1, h // side), max(1, w // side)
    ys = np.linspace(0, h - side, ny).round().astype(int)
    xs = np.linspace(0, w - side, nx).round().astype(int)
    spots = [(y, x) for y in ys for x in xs]
    if valid is not None:
        spots = [(y, x) for y, x in spots if valid[y:y + side, x:x + side].mean() >= 0.5]
    if len(spots) > max_crops:
        keep = np.linspace(0, len(spots) - 1, max_crops).round().astype(int)
        spots = [spots[k] for k in keep]
    if not spots:
        return np.zeros((0, side, side, rgb.shape[2]), np.uint8)
    return np.stack([rgb[y:y + side, x:x + side] for y, x in spots])


# ------------------------------------------------------------------------------------------------ scoring
def card_fingerprint(card: dict[str, Any]) -> dict[str, Any] | None:
    """The card's fingerprint when it has one we can read (older cards: None, scored as unknown)."""
    domain = card.get("domain") if isinstance(card, dict) else None
    fp = domain.get("fingerprint") if isinstance(domain, dict) else None
    if not isinstance(fp, dict) or fp.get("version") != FINGERPRINT_VERSION:
        return None
    needed = ("feature_mean", "components", "scales", "points", "colour_histograms", "distance_quantiles",
              "colour_quantiles")
    return fp if all(isinstance(fp.get(k), (list, dict)) and fp.get(k) for k in needed) else None


def valid_extent(shape: tuple[int, ...], valid: np.ndarray | None) -> tuple[int, int]:
    """(width, height) of the box that holds the valid pixels (the whole image when all or none are valid)."""
    if valid is None or not valid.any():
        return int(shape[1]), int(shape[0])
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _too_small(rgb: np.ndarray, valid: np.ndarray | None, side: int) -> str | None:
    """Why an image is too small to hold against the training tiles, or None. A crop is padded by mirroring up to
    ``side``; below a quarter of it the mirrored copies, not the image, would be compared (an 8 px patch of one
    colour scored "in domain")."""
    w, h = valid_extent(rgb.shape[:2], valid)
    least = side // MIN_SIDE_SHARE
    if min(h, w) >= least:
        return None
    return (f"the image is too small to compare with the training tiles ({w} x {h} px at the model's pixel size; "
            f"at least {least} px a side needed)")


def _share_farther(d: float, quantiles: list[float]) -> float:
    """Share of training tiles at least as far as ``d`` (from their 101 stored quantiles)."""
    q = np.asarray(quantiles, np.float64)
    return float(1.0 - np.interp(d, q, QUANTILES, left=0.0, right=1.0))


@dataclass
class ColourFit:
    """The colour half of an image's score, which needs no network. The score is the lower of content and colour,
    and the fit their mean, so ``share`` bounds the score from above and ``half_fit`` the fit from below: a
    candidate model whose colour alone rules it out is never run (``core.seg.model_choice``)."""

    crops: np.ndarray
    distance: float
    share: float
    half_fit: float


def colour_fit(card: dict[str, Any], rgb: np.ndarray, valid: np.ndarray | None = None) -> ColourFit | DomainScore:
    """The colour half against the card's fingerprint, or an unknown ``DomainScore`` saying why there is none."""
    fp = card_fingerprint(card)
    if fp is None:
        return DomainScore(known=False, reasons=["the model's card has no domain fingerprint (an older checkpoint)"])
    side = int(fp.get("side", FEATURE_SIDE))
    small = _too_small(rgb, valid, side)
    if small:
        return DomainScore(known=False, reasons=[small])
    crops = image_crops(rgb, valid, side)
    if len(crops) == 0:
        return DomainScore(known=False, reasons=[TOO_LITTLE])
    hists = np.stack([colour_histogram(rgb_part(c, card_bands(card))) for c in crops])
    cdist = float(np.median(_knn_l1(hists, _unpack(fp["colour_histograms"]))))
    cq = fp["colour_quantiles"]
    return ColourFit(crops, cdist, _share_farther(cdist, cq), 0.5 * cdist / max(float(cq[50]), 1e-9))


def score_image(model: nn.Module, card: dict[str, Any], rgb: np.ndarray, valid: np.ndarray | None = None,
                device: torch.device | str = "cpu", colour: ColourFit | None = None) -> DomainScore:
    """Score an image (already at the pixel size the model will see) against the model's fingerprint
    (``colour``: its colour half when already computed)."""
    fitted = colour if colour is not None else colour_fit(card, rgb, valid)
    if isinstance(fitted, DomainScore):
        return fitted
    fp = card_fingerprint(card)
    assert fp is not None  # colour_fit checked it
    crops, cdist = fitted.crops, fitted.distance
    feats = pooled_features(model, crops, device, bands=card_bands(card))
    if feats.shape[1] != _unpack(fp["feature_mean"]).shape[-1]:
        return DomainScore(known=False, reasons=["the fingerprint does not match the model's encoder"])
    dist = float(np.median(_knn(_project(feats, fp), _unpack(fp["points"]))))
    dq, cq = fp["distance_quantiles"], fp["colour_quantiles"]
    reasons = []
    if dist > OOD_MARGIN * float(dq[OOD_PERCENTILE]):
        reasons.append(f"its content is farther from the training tiles than {OOD_PERCENTILE} % of them are from "
                       "each other "
                       f"({dist / max(float(dq[50]), 1e-9):.1f}x the typical distance)")
    if cdist > OOD_MARGIN * float(cq[OOD_PERCENTILE]):
        shown = rgb_part(rgb, card_bands(card))  # the image's valid pixels, not the crops' no-data
        mean_rgb = (shown[valid] if valid is not None and valid.any() else shown.reshape(-1, 3)).mean(axis=0)
        ref = fp.get("colour_mean_rgb")
        ref_text = f" vs {tuple(int(v) for v in ref)} in training" if ref else ""
        reasons.append(f"its colours are unlike any training tile's (mean RGB {tuple(int(v) for v in mean_rgb)}"
                       f"{ref_text})")
    fit = 0.5 * dist / max(float(dq[50]), 1e-9) + fitted.half_fit
    return DomainScore(known=True, score=min(_share_farther(dist, dq), fitted.share), distance=dist,
                       fit=fit, colour_distance=cdist, in_domain=not reasons, reasons=reasons)
