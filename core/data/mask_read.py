"""What a label mask file means: one rule for the data loaders (and so ``core.evaluate``), the Segment page, the
Gradio demo and ``python -m core.segment --labels``.

Why: a palette PNG stores indices into its own palette, and data sets (the Dubai set among them) save the class
colours in another palette order in every file; read as indices, such a mask is scored wrong without a word. So a
mask is read by what it shows, against a class table (:class:`MaskTable`):

- a colour image (RGB, RGBA, ...): by colour (class colours; ignore colours unlabeled); a grey one (three equal
  channels) as indices when its colours say nothing;
- one band (L, I, I;16, 1, LA): as class indices; a colour-coded data set (``coding="color"``) tries its grey
  colours (v, v, v) first;
- a palette (P, PA): through its palette when the colours its pixels use are class (or ignore) colours, else as
  indices when the indices it uses are class indices (or ignored).

A reading *fits* when every pixel is a class or ignored, and *holds most* when more pixels are a class than unknown
(a few stray colours, as an RGB twin of the file would have). The first reading that fits or holds most is taken,
its unknown pixels counted and set to the ignore index. When none does, a palette mask is refused: it matches
neither the classes' colours nor their indices (:class:`MaskError`, one line naming its first unknown colours);
any mask of which no pixel is a class or ignored is refused too (``empty_ok``: a data loader keeps it, all unknown,
and warns, as a set may hold a scene of only an unlisted colour); else the first reading stands, its unknowns
counted.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .paths import DataError
from .seg_files import _PIL_ERRORS, IGNORE_INDEX, ColorCode, Decoded, IndexCode, _open_pil, _rasterio_bands

PALETTE_MODES = ("P", "PA")
BAND_MODES = ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
SHOW_UNKNOWN = 3  # unknown colours or values named in a refusal
MASK_RULE = 2  # 2: palettes read by their colours (1: index data sets read palette indices); in index sets' caches


class MaskError(DataError):
    """A mask that cannot be read as the classes' colours or indices; the message is one line."""


@dataclass(frozen=True)
class MaskTable:
    """What the decoding needs of a class table: the class colours (class k = ``colors[k]``), ignore colours, the
    ignore index (written where unlabeled; read as unlabeled), each class's value in index masks (None: k),
    ignore values, the colour rule (exact, ``tolerance`` per channel, or ``threshold`` at 128 per channel) and how
    the data set declares its masks (``coding``: "color", "index", or None when only the file can say)."""

    colors: tuple[tuple[int, int, int], ...]
    ignore_colors: tuple[tuple[int, int, int], ...] = ()
    ignore_index: int = IGNORE_INDEX
    values: tuple[int, ...] | None = None
    ignore_values: tuple[int, ...] = ()
    tolerance: int = 0
    threshold: bool = False
    coding: str | None = None

    @classmethod
    def of_classes(cls, classes: Sequence[dict[str, Any]], ignore_index: int = IGNORE_INDEX,
                   **kwargs: Any) -> MaskTable:
        """From class dicts (``color``: the mask colour, as in class tables and model cards)."""
        return cls(tuple(_rgb(c.get("color")) for c in classes), ignore_index=int(ignore_index), **kwargs)

    @property
    def num_classes(self) -> int:
        return len(self.colors)

    def color_code(self) -> ColorCode:
        return ColorCode(self.colors, self.ignore_colors, self.ignore_index, self.threshold, self.tolerance)

    def index_code(self) -> IndexCode:
        values = self.values if self.values is not None else range(self.num_classes)
        return IndexCode({v: k for k, v in enumerate(values)}, [*self.ignore_values, self.ignore_index],
                         self.ignore_index)


def _rgb(colour: Any) -> tuple[int, int, int]:
    """A class's mask colour; (-1, -1, -1), which no pixel has, for a class without one."""
    return tuple(int(v) for v in colour[:3]) if colour is not None else (-1, -1, -1)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ readings
@dataclass
class _Reading:
    how: str
    classed: int  # pixels of a class
    unknown: int  # pixels of no class and not ignored
    labels: Callable[[], np.ndarray]  # the whole label map (made only for the reading taken)
    unknown_what: Callable[[], list[tuple[Any, int]]]  # unknown colours or values, most pixels first
    decisive: bool = False  # taken whatever its unknowns (a palette whose used colours are class colours)

    def holds(self) -> bool:
        return self.decisive or self.unknown == 0 or self.classed > self.unknown


def _by_entries(how: str, values: np.ndarray, entries: np.ndarray, counts: np.ndarray,
                classify: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], n: int,
                shown: np.ndarray | None = None) -> _Reading:
    """A reading through a lookup table: ``values`` index ``entries`` (palette colours or values) used ``counts``
    times each; ``shown`` is what a refusal names of each entry (default: the entries)."""
    lut, bad = classify(entries)
    bad = bad & (counts > 0)
    shown = entries if shown is None else shown

    def what() -> list[tuple[Any, int]]:
        order = np.flatnonzero(bad)[np.argsort(-counts[bad], kind="stable")]
        return [(_plain(shown[i]), int(counts[i])) for i in order]

    return _Reading(how, int(counts[lut < n].sum()), int(counts[bad].sum()), lambda: lut[values], what)


def _plain(v: np.ndarray) -> Any:
    return [int(c) for c in v] if np.ndim(v) else int(v)


def _colours_full(how: str, rgb: np.ndarray, code: ColorCode, n: int) -> _Reading:
    """Colours pixel by pixel (a colour image may hold millions of them)."""
    labels, bad = code.classify(rgb)

    def what() -> list[tuple[Any, int]]:
        px = rgb[bad][:1_000_000].astype(np.int64)  # the first million unknown pixels say enough
        keys, counts = np.unique((px[:, 0] << 16) | (px[:, 1] << 8) | px[:, 2], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return [([int(keys[i] >> 16), int(keys[i] >> 8 & 255), int(keys[i] & 255)], int(counts[i])) for i in order]

    return _Reading(how, int((labels < n).sum()), int(bad.sum()), lambda: labels, what)


def _single_band(values: np.ndarray, table: MaskTable) -> list[Callable[[], _Reading]]:
    """Indices, and grey colours (v, v, v); a colour-coded data set's grey masks are colours first."""
    values = np.asarray(values)
    if values.dtype.kind == "f" and not (np.isfinite(values).all() and (values == np.round(values)).all()):
        raise MaskError("a mask of fractional values: give class indices (whole numbers) or class colours")
    values = values.astype(np.int64)
    n = table.num_classes
    if values.size and values.min() >= 0 and values.max() < 1 << 16:
        entries = np.arange(int(values.max()) + 1)
        counts = np.bincount(values.ravel(), minlength=len(entries))
        flat = values
    else:  # negative or very large values: the distinct ones
        entries, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        flat = inverse.reshape(values.shape)
    grey = np.repeat(np.where(entries <= 255, entries, -1)[:, None], 3, axis=1)

    def colours(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lut, bad = table.color_code().classify(np.maximum(e, 0))
        beyond = e[:, 0] < 0  # a value above 255 is no grey colour
        return np.where(beyond, table.ignore_index, lut).astype(np.uint8), bad | beyond

    def idx() -> _Reading:
        return _by_entries("class indices", flat, entries, counts, table.index_code().classify, n)

    def col() -> _Reading:
        return _by_entries("class colours (grey)", flat, grey, counts, colours, n, entries)
    return [col, idx] if table.coding == "color" else [idx, col]


def _palette(indices: np.ndarray, palette: np.ndarray, table: MaskTable) -> list[Callable[[], _Reading]]:
    """Through the palette's colours, then as the palette indices. The colours are decisive when the entries the
    pixels use hold two or more distinct class colours: a palette of indices matches class colours by accident at
    most once, and a mask mostly of an unlabeled colour the table does not know must not fall back to indices."""
    counts = np.bincount(indices.ravel(), minlength=256)[:256]
    n = table.num_classes
    entries = np.arange(256)

    def colours() -> _Reading:
        reading = _by_entries("class colours (palette)", indices, palette, counts, table.color_code().classify, n)
        lut, _ = table.color_code().classify(palette)
        used = np.unique(lut[(counts > 0) & (lut < n)])
        reading.decisive = len(used) >= min(2, n)
        return reading

    return [colours,
            lambda: _by_entries("class indices (palette)", indices, entries, counts, table.index_code().classify, n)]


def _colour(rgb: np.ndarray, table: MaskTable) -> list[Callable[[], _Reading]]:
    """By colour; a grey image (three equal channels) also as indices."""
    readings = [lambda: _colours_full("class colours", rgb, table.color_code(), table.num_classes)]

    def grey() -> _Reading | None:
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            return None
        return _by_entries("class indices (grey)", rgb[..., 0], np.arange(256),
                           np.bincount(rgb[..., 0].ravel(), minlength=256), table.index_code().classify,
                           table.num_classes)
    return [*readings, grey]


def _choose(readings: list[Callable[[], _Reading | None]], palette: bool, total: int, table: MaskTable,
            empty_ok: bool = False) -> _Reading:
    """The first reading that fits or holds most; else the rules of the module's docstring."""
    seen: list[_Reading] = []
    for make in readings:
        reading = make()
        if reading is None:
            continue
        if reading.holds():
            return reading
        seen.append(reading)
    if palette or (not empty_ok and all(r.unknown == total for r in seen)):
        raise MaskError(_neither(seen, palette, table))
    return seen[0]


LOSSY_LEVELS = 12  # a colour this close to a class colour (per channel) but not it: compression, not another set


def near_class(colour: Any, colors: Sequence[tuple[int, ...]]) -> tuple[int, int] | None:
    """(class, levels off) of the first class colour an unknown colour lies a few levels from, else None (also for
    a band's value, which is no colour)."""
    try:
        c = np.asarray(colour, dtype=np.int64).reshape(3)
    except (TypeError, ValueError):
        return None
    for k, ref in enumerate(colors):
        off = int(np.abs(c - np.asarray(ref, np.int64)).max()) if len(ref) == 3 else 0
        if 0 < off <= LOSSY_LEVELS:
            return k, off
    return None


def lossy_hint(colour: Any, colors: Sequence[tuple[int, ...]], names: Sequence[str] = ()) -> str:
    """When an unknown mask colour lies a few levels from a class colour (a JPEG's ringing, a colour edited by
    hand), what to do; else "". ``names``: the classes' names, to say whose colour it misses."""
    near = near_class(colour, colors)
    if near is None:
        return ""
    k, off = near
    whose = f" of {names[k]}" if k < len(names) else ""
    return (f" ({list(map(int, colour))} is {off} level(s) off the class colour {list(colors[k])}{whose}: a lossy "
            "copy such as a JPEG, or an edited colour? Give the mask as PNG in the legend's exact colours)")


def _neither(seen: list[_Reading], palette: bool, table: MaskTable) -> str:
    """One line: which readings failed and the first unknown colours (or values) of each, most pixels first."""
    def named(r: _Reading) -> str:
        what = r.unknown_what()
        text = ", ".join(f"{v} ({c:,} px)" for v, c in what[:SHOW_UNKNOWN])
        return text + (f" and {len(what) - SHOW_UNKNOWN} more" if len(what) > SHOW_UNKNOWN else "")

    colours = next((r for r in seen if "colours" in r.how), None)
    indices = next((r for r in seen if "indices" in r.how), None)
    parts = []
    if colours is not None and (palette or indices is None):  # a grey mask's colours are its values
        parts.append(f"its colours {named(colours)} are no class's nor ignored"
                     + lossy_hint(colours.unknown_what()[0][0], table.colors))
    if indices is not None:
        parts.append(f"its {'indices' if palette else 'values'} {named(indices)} are no class index nor ignored")
    what = ("neither the classes' colours nor their indices" if colours is not None and indices is not None else
            "none of the classes' colours" if colours is not None else "none of the classes' indices")
    return f"the {'palette ' if palette else ''}mask matches {what}: " + "; ".join(parts)


# ------------------------------------------------------------------------------------------------ entry points
def palette_arrays(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(indices (H, W), palette (256, 3) int64, unset entries black) of a palette-mode image."""
    a = np.asarray(img)
    pal = np.zeros((256, 3), np.int64)
    colours = np.asarray(img.getpalette() or [], np.int64).reshape(-1, 3)[:256]
    pal[:len(colours)] = colours
    return (a[..., 0] if a.ndim == 3 else a), pal


def decode_image(img: Image.Image, table: MaskTable, empty_ok: bool = False) -> Decoded:
    """A loaded PIL mask to class indices by the module's rule; MaskError when it matches neither reading."""
    if img.mode in PALETTE_MODES:
        readings, palette = _palette(*palette_arrays(img), table), True
    elif img.mode in BAND_MODES:
        band = img.getchannel(0) if img.mode == "LA" else img
        readings, palette = _single_band(np.asarray(band), table), False
    else:
        readings, palette = _colour(np.asarray(img.convert("RGB")), table), False
    return _decoded(_choose(readings, palette, img.width * img.height, table, empty_ok))


def decode_bands(bands: list[np.ndarray], table: MaskTable, empty_ok: bool = False) -> Decoded:
    """A mask read by rasterio (a GeoTIFF PIL cannot open): one band of indices, or 8-bit colour bands."""
    if len(bands) == 1:
        readings = _single_band(bands[0], table)
    elif len(bands) >= 3 and all(b.dtype == np.uint8 for b in bands):
        readings = _colour(np.ascontiguousarray(np.stack(bands[:3], axis=2)), table)
    else:
        raise MaskError(f"a mask of {len(bands)} {bands[0].dtype} bands: give one band of class indices or 8-bit "
                        "class colours")
    return _decoded(_choose(readings, False, bands[0].size, table, empty_ok))


def _decoded(r: _Reading) -> Decoded:
    unknowns = tuple(r.unknown_what()[:64]) if r.unknown else ()
    example = unknowns[0][0] if unknowns else None
    return Decoded(np.ascontiguousarray(r.labels(), np.uint8), r.unknown, example, r.how, unknowns)


def read_mask(path: Path, table: MaskTable, empty_ok: bool = False) -> Decoded:
    """A mask file to class indices (PIL, else rasterio for GeoTIFFs PIL cannot read); DataError naming the file.
    ``empty_ok``: a mask of no class at all (but not a palette of neither) is read as all unknown, not refused."""
    try:
        with _open_pil(path) as img:
            img.load()
            try:
                return decode_image(img, table, empty_ok)
            except MaskError as err:
                raise MaskError(f"mask {path}: {err}") from None
    except DataError:
        raise
    except _PIL_ERRORS as err:
        try:
            bands = _rasterio_bands(path)
        except Exception as err2:  # noqa: BLE001 - any decoder failure is one clear error
            raise DataError(f"cannot read mask {path}: PIL: {err}; rasterio: {err2}") from None
        try:
            return decode_bands(bands, table, empty_ok)
        except MaskError as err3:
            raise MaskError(f"mask {path}: {err3}") from None


# ------------------------------------------------------------------------------------------------ model cards
def mask_rule(table: MaskTable) -> dict[str, Any]:
    """How a data set's colour masks are read, for a model card (``label_masks``), so a user's masks for that model
    are read alike: its unlabeled colours ignored, DeepGlobe's channels on/off at 128."""
    return {"ignore_colors": [list(c) for c in table.ignore_colors], "threshold": bool(table.threshold),
            "tolerance": int(table.tolerance)}


def card_table(classes: Sequence[dict[str, Any]], ignore_index: int = IGNORE_INDEX,
               rule: Any = None) -> MaskTable:
    """The mask table of a model card: its classes, and its ``label_masks`` rule when it has one (older cards:
    exact class colours, nothing ignored)."""
    rule = rule if isinstance(rule, dict) else {}
    ignore = tuple(_rgb(c) for c in rule.get("ignore_colors") or [] if isinstance(c, (list, tuple)) and len(c) >= 3)
    tolerance = rule.get("tolerance", 0)
    tolerance = tolerance if isinstance(tolerance, int) and 0 <= tolerance < 128 else 0
    return MaskTable.of_classes(classes, ignore_index, ignore_colors=ignore, threshold=rule.get("threshold") is True,
                                tolerance=tolerance)


def label_masks_of(dataset: Any) -> dict[str, Any]:
    """``{"label_masks": rule}`` for the card of a model trained on ``dataset`` (a set that reads its masks by a
    ``mask_table``); ``{}`` for others (generated sets)."""
    try:
        table = dataset.mask_table()
    except (AttributeError, NotImplementedError):
        return {}
    return {"label_masks": mask_rule(table)}
