"""Segmenting a loaded image: one model (``segment_loaded``: pixel size, bands, no-data, sliding windows, areas)
or the best of several (``segment_choosing``: ``--checkpoint auto``, by domain fit). The command line that writes
the files (``python -m core.segment``) is ``core.seg.segment_cli``; the Segment page and the Gradio demo call these.
"""
from __future__ import annotations

from dataclasses import replace
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..store.checkpoint import CheckpointError
from .domain import DomainScore, score_image, training_data_kind, training_data_text
from ..imaging.band_preview import picture_views
from ..imaging.bands import card_bands, is_rgb
from ..imaging.model_bands import band_nodata_mask, model_pixels
from ..imaging.imageio import ImageError, LoadedImage
from .infer import NODATA, class_areas, predict
from .model_choice import Choice, choose_model, image_is_generated, score_for_model
from .nodata import nodata_mask, uniform_borders
from .resample import (model_pixel_size, no_pixel_size_note, pixel_size_reason, resample_factor, resample_mask,
                       resample_rgb)
from .segmentation_result import Segmentation, write_outputs

DARK_LEVEL = 48  # of 255: an image whose brightest pixels stay below this is said to be very dark


def segment_loaded(loaded: LoadedImage, model: torch.nn.Module, card: dict[str, Any], *, tile: int = 512,
                   overlap: float = 0.25, batch_size: int = 4, tta: bool = False,
                   device: torch.device | None = None,
                   progress: Callable[[int, int], None] | None = None, resample: bool = True,
                   borders: bool = True, domain: DomainScore | None = None,
                   model_info: dict[str, Any] | None = None, nodata: np.ndarray | None = None) -> Segmentation:
    """Predict one loaded image in memory: what the workbench's Segment page and the Gradio demo call.

    No-data pixels (``core.seg.nodata``) are left out; the image runs at the model's pixel size when both are known
    and differ (``core.seg.resample``; ``resample=False`` switches it off) and the mask comes back on the image's grid;
    the image is scored against the model's domain unless ``domain`` is given (and its no-data mask computed
    unless ``nodata`` is). ImageError when nothing is left.
    """
    classes = card["classes"]
    notes = list(loaded.notes)
    nodata = nodata_mask(loaded, borders=borders) if nodata is None else nodata
    pixels = model_pixels(loaded, card)  # RGB, or the card's bands (BandError when the image lacks one)
    empty_bands = band_nodata_mask(loaded, card)  # NaN or nodata in a band beyond the RGB picture (zeroed, as trained)
    if empty_bands is not None:
        nodata = nodata | empty_bands
    if nodata.all():
        raise ImageError("every pixel is no data (nodata value, mask, transparency or uniform border): "
                         "nothing to segment")
    model_m = model_pixel_size(card)
    factor = resample_factor(loaded.pixel_size_m, model_m) if resample else None
    rgb = pixels if factor is None else resample_rgb(pixels, factor)
    if domain is None:
        small = nodata if factor is None else resample_mask(nodata, rgb.shape[:2])
        domain = score_image(model, card, rgb, ~small, device or "cpu")
    domain = replace(domain, reasons=list(domain.reasons), trained_on=domain.trained_on or training_data_text(card))
    size_reason = pixel_size_reason(loaded.pixel_size_m, model_m, resampled=factor is not None)
    if size_reason:
        notes.append(size_reason)
        if factor is None and domain.known:
            domain.reasons.append(size_reason)
            domain.in_domain = False
    if training_data_kind(card) == "generated" and not image_is_generated(loaded):
        domain.reasons.insert(0, "the model was trained on generated scenes, and this image does not say it is one")
        domain.in_domain = False
    for reason in _colour_reasons(pixels, ~nodata) if is_rgb(card_bands(card)) else []:
        if domain.known:  # said once: in the warning, which also makes the areas relative
            domain.reasons.append(reason)
            domain.in_domain = False
        else:
            notes.append(reason)
    if loaded.pixel_size_m is None and domain.warning() is None:  # said, not left to an empty column (a review)
        notes.append(no_pixel_size_note(model_m))
    if nodata.any():
        share = nodata.mean()  # a few pixels are said as pixels: "0.0 %" of them reads as none
        notes.append((f"{100 * share:.1f} % of the pixels hold no data: left out" if share >= 0.0005 else
                      f"{int(nodata.sum()):,} pixel(s) hold no data: left out") + _corner_text(loaded, borders))
    if max(rgb.shape[:2]) < tile:
        notes.append(f"the image ({rgb.shape[1]}x{rgb.shape[0]} px) is smaller than the {tile} px window: "
                     "segmented in one window")
    mask = predict(model, rgb, tile=tile, overlap=overlap, batch_size=batch_size, tta_flip=tta,
                   device=device, progress=progress, card=card)
    if factor is not None:
        mask = resample_mask(mask, loaded.shape)
    mask[nodata] = NODATA
    return Segmentation(rgb=loaded.rgb, mask=mask, classes=classes, views=picture_views(loaded),
                        inference={"tile": int(tile), "overlap": float(overlap), "tta": bool(tta)},
                        bands=None if is_rgb(card_bands(card)) else card_bands(card),
                        areas=class_areas(mask, classes, None if domain.warning() else loaded.pixel_size_m),
                        profile=loaded.profile,
                        notes=notes, domain=domain, pixel_size_m=loaded.pixel_size_m,
                        pixel_size_used_m=model_m if factor is not None else loaded.pixel_size_m,
                        resampled=round(factor, 6) if factor is not None else None,
                        nodata_share=float(nodata.mean()), model=dict(model_info or {}),
                        label_masks=card.get("label_masks"))


def _load_entry(cache: Any, entry: Any, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A model through ``cache``, its classes checked; CheckpointError names the model and says why not."""
    try:
        model, card = cache.load(entry.path, device)
    except Exception as err:  # noqa: BLE001 - a missing file, a card that builds no model: one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"Model {entry.label} cannot be used: {first}") from None
    return model, card


def segment_choosing(loaded: LoadedImage, entries: list[Any], cache: Any, *, given: Any = None,
                     given_by: str = "chosen by the user", device: torch.device | None = None, resample: bool = True,
                     borders: bool = True, **predict_options: Any) -> Segmentation:
    """Segment with the model ``given`` (a ``ModelEntry``; ``given_by``: who chose it, as the result says it) or,
    when None, the best domain fit among ``entries`` (``core.seg.model_choice``); ``cache.load(path, device)`` gives
    (model, card). The choice goes into the result."""
    dev = device or torch.device("cpu")
    nodata = nodata_mask(loaded, borders=borders)
    if nodata.all():
        raise ImageError("every pixel is no data (nodata value, mask, transparency or uniform border): "
                         "nothing to segment")
    if given is not None:
        model, card = _load_entry(cache, given, dev)
        domain = score_for_model(model_pixels(loaded, card), nodata, loaded.pixel_size_m, model, card, dev, resample)
        choice = Choice(given, domain, "given", given_by)
    else:
        choice = choose_model(loaded, nodata, loaded.pixel_size_m, entries, cache, dev, resample)
        model, card = _load_entry(cache, choice.entry, dev)
    return segment_loaded(loaded, model, card, device=device, resample=resample, borders=borders,
                          domain=choice.domain, model_info=choice.as_dict(), nodata=nodata, **predict_options)


def segment_image(loaded: LoadedImage, model: torch.nn.Module, card: dict[str, Any], out_dir: Path, stem: str, *,
                  tile: int = 512, overlap: float = 0.25, batch_size: int = 4, tta: bool = False,
                  device: torch.device | None = None,
                  progress: Callable[[int, int], None] | None = None, image: str = "",
                  **options: Any) -> dict[str, Path]:
    """Predict one loaded image and write its outputs as ``out_dir/<stem>_*``; return them by kind."""
    seg = segment_loaded(loaded, model, card, tile=tile, overlap=overlap, batch_size=batch_size, tta=tta,
                         device=device, progress=progress, **options)
    return write_outputs(seg, out_dir, stem, image)


def _corner_text(loaded: LoadedImage, borders: bool) -> str:
    """What of the no data is a near-white or near-black corner region, and how to keep it: an overexposed corner
    of sand is ground, and it vanished from the areas and the score as "no data" with no word on why."""
    if not borders:
        return ""
    corner = uniform_borders(loaded.rgb)
    for own in (loaded.declared_nodata, loaded.nodata_value_pixels):  # the file's own no-data: kept out either way
        if own is not None:
            corner &= ~own
    corner = corner.mean()
    if corner < 0.0005:
        return ""
    return (f" ({100 * corner:.1f} % a near-white or near-black region at a corner, taken for a no-data collar; "
            "if it is ground (overexposed or in shadow), keep it with core.segment's --keep-borders or by unticking "
            "the Segment page's \"White/black corners are no data\")")


def _colour_reasons(rgb: np.ndarray, valid: np.ndarray) -> list[str]:
    """Why a colour model cannot read this RGB picture as it was trained to, which the fingerprint misses: a grey
    scan (the colour half of the fit compares greys with greys; a grey forest tile fit the Dubai model at 0.12 and
    got m² of buildings) or a very dark photo (it looks like deep water, fit 0.92)."""
    reasons = []
    if is_grey(rgb, valid):
        reasons.append("the image is grey (its red, green and blue are one): the model was trained on colour "
                       "imagery, and what it reads from colour is missing here")
    level = dark_level(rgb, valid)
    if level is not None and level < DARK_LEVEL:
        reasons.append(f"the image is very dark (its brightest pixels reach {level} of 255): underexposed, or stored "
                       "with more bits than were read; dark ground looks like water or shadow to a model trained "
                       "on well-exposed imagery")
    return reasons


def dark_level(rgb: np.ndarray, valid: np.ndarray, sample: int = 200_000) -> int | None:
    """The 99th percentile of each valid pixel's brightest channel (None without valid RGB pixels). Why: an
    underexposed photo (or a deeper image read by its low bits) looks like deep water to the domain fingerprint,
    and scored a fit of 0.92 while being segmented as water; every real scene we hold reaches 143 or more."""
    pixels = _valid_rgb_sample(rgb, valid, sample)
    return int(np.percentile(pixels.max(axis=1), 99)) if pixels is not None and len(pixels) else None


def is_grey(rgb: np.ndarray, valid: np.ndarray, tolerance: int = 2, sample: int = 200_000) -> bool:
    """Whether an RGB picture is grey where it holds data: its channels within ``tolerance`` of each other in 99 %
    of up to ``sample`` pixels (a JPEG's rounding kept apart from colour). Why: a grey scan read as RGB scored a
    higher domain fit than its colour original, and nothing told the user the model had lost colour."""
    pixels = _valid_rgb_sample(rgb, valid, sample)
    if pixels is None or not len(pixels):
        return False
    pixels = pixels.astype(np.int16)
    spread = np.abs(pixels - pixels[:, :1]).max(axis=1)
    return bool((spread <= tolerance).mean() >= 0.99)


def _valid_rgb_sample(rgb: np.ndarray, valid: np.ndarray, sample: int) -> np.ndarray | None:
    """Up to about ``sample`` valid pixels (N x 3), taken by a stride before anything is copied, so that a 50 MP
    image costs no more than a small one; None when the picture is not RGB."""
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        return None
    step = max(1, rgb.shape[0] * rgb.shape[1] // sample)
    return rgb.reshape(-1, 3)[::step][valid.reshape(-1)[::step]]
