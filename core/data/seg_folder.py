"""Your own labeled imagery: a generic ``images/`` + ``masks/`` folder (matched by name, any nesting) whose classes
and mask encoding a YAML class table declares (``configs/classes/*.yaml``).

Why apart from ``seg_formats``: the published layouts are fixed, this one is configured; its table is validated
field by field and also carries the data set's domain (platform, pixel size, region) for the model card.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..store.file_versions import load_yaml  # bounded: no aliases, 1 MiB, 32 levels
from .paths import DataError
from .seg_base import IMAGE_SUFFIXES, Scene, SegTiles, resolve_root
from .mask_read import MASK_RULE, MaskTable
from .seg_files import IGNORE_INDEX


# ------------------------------------------------------------------------------------------------ generic
_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)]
MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_gt", "_seg", "_segmentation", "_annotation", "-mask",
                 "-label")
TABLE_KEYS = {"name", "description", "source", "classes", "ignore_index", "ignore_colors", "ignore_values",
              "mask_format", "color_tolerance", "images", "masks", "mask_suffixes", "image_suffixes", "group_by",
              "places", "domain"}


@dataclass
class ClassTable:
    """A generic data set's YAML file: its classes and how its masks (and folders) are laid out."""
    path: Path
    classes: list[dict]
    values: list[int]  # index masks: the raw value of each class
    ignore_index: int = IGNORE_INDEX
    ignore_colors: list[list[int]] = field(default_factory=list)
    ignore_values: list[int] = field(default_factory=list)
    mask_format: str = "color"
    color_tolerance: int = 0
    images: str = "images"
    masks: str = "masks"
    mask_suffixes: list[str] = field(default_factory=lambda: list(MASK_SUFFIXES))
    image_suffixes: list[str] = field(default_factory=lambda: ["_sat", "_image", "_img", "_rgb"])
    group_by: str = "file"
    # where tiles are neighbours, for figures across scenes (``seg_subset.place_ids``): "folder" when the images of
    # one folder are cut from one picture (a Dubai tile's 9 parts), though the split may still take them one by one
    places: str = "scene"
    name: str = "folder"
    domain: dict = field(default_factory=dict)  # platform, gsd_m, region, source: what model cards state

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        return d


def _rgb(v: Any, where: str) -> list[int]:
    if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in v)):
        raise ValueError(f"{where}: a colour is [r, g, b] with integers 0-255, got {v!r}")
    return [int(c) for c in v]


def load_class_table(path: str | Path) -> ClassTable:
    """Read and check a class table; any problem is a DataError naming the file and the entry."""
    p = resolve_root(path)
    if not p.is_file():
        raise DataError(f"class table not found: {p}")
    try:
        raw = load_yaml(p.read_text())
    except yaml.YAMLError as err:
        raise DataError(f"class table {p} is not valid YAML: {' '.join(str(err).split())}") from None
    try:
        return _parse_table(p, raw)
    except (ValueError, TypeError) as err:
        raise DataError(f"class table {p}: {err}") from None


def _parse_table(p: Path, raw: Any) -> ClassTable:
    if not isinstance(raw, dict):
        raise ValueError("must hold a mapping with a 'classes' list")
    extra = set(raw) - TABLE_KEYS
    if extra:
        raise ValueError(f"unknown key(s) {', '.join(sorted(extra))}; known: {', '.join(sorted(TABLE_KEYS))}")
    fmt = raw.get("mask_format", "color")
    if fmt not in ("color", "index"):
        raise ValueError(f"mask_format must be 'color' or 'index', got {fmt!r}")
    entries = raw.get("classes")
    if not isinstance(entries, list) or not entries:
        raise ValueError("'classes' must be a non-empty list of {name, color} entries")
    classes, values = [], []
    for k, c in enumerate(entries):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"].strip():
            raise ValueError(f"classes[{k}] needs a name, got {c!r}")
        if "color" not in c and fmt == "color":
            raise ValueError(f"classes[{k}] ({c['name']}) needs a color [r, g, b]")
        unknown = set(c) - {"name", "color", "value", "display"}
        if unknown:
            raise ValueError(f"classes[{k}] ({c['name']}): unknown key(s) {', '.join(sorted(unknown))}")
        color = _rgb(c["color"], f"classes[{k}] ({c['name']})") if "color" in c else list(_PALETTE[k % 12])
        value = c.get("value", k)
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"classes[{k}] ({c['name']}): value must be an integer >= 0, got {value!r}")
        classes.append({"name": c["name"], "color": color})
        if "display" in c:  # the colour it is drawn in, where the mask colour reads badly (imaging.colours)
            classes[-1]["display"] = _rgb(c["display"], f"classes[{k}] ({c['name']}) display")
        values.append(int(value))
    names = [c["name"] for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"class names occur twice: {sorted({n for n in names if names.count(n) > 1})}")
    if len(classes) > 255:
        raise ValueError(f"at most 255 classes, got {len(classes)}")
    ignore = raw.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or not len(classes) <= ignore <= 255:
        raise ValueError(f"ignore_index must be an integer in {len(classes)}..255 (not a class index), got {ignore!r}")
    ignore_colors = [_rgb(c, "ignore_colors") for c in (raw.get("ignore_colors") or [])]
    ignore_values = raw.get("ignore_values") or []
    if not all(isinstance(v, int) and v >= 0 for v in ignore_values):
        raise ValueError(f"ignore_values must be integers >= 0, got {ignore_values!r}")
    if fmt == "color":
        colors = [tuple(c["color"]) for c in classes]
        if len(set(colors)) != len(colors):
            raise ValueError("two classes have the same color")
        both = sorted(set(colors) & {tuple(c) for c in ignore_colors})
        if both:
            raise ValueError(f"colour {list(both[0])} is both a class and in ignore_colors")
    else:
        if len(set(values)) != len(values):
            raise ValueError("two classes have the same value")
        if set(values) & set(ignore_values):
            raise ValueError("a value is both a class and in ignore_values")
    tol = raw.get("color_tolerance", 0)
    if not isinstance(tol, int) or not 0 <= tol < 128:
        raise ValueError(f"color_tolerance must be an integer in 0..127, got {tol!r}")
    group_by = raw.get("group_by", "file")
    if group_by not in ("file", "folder"):
        raise ValueError(f"group_by must be 'file' or 'folder', got {group_by!r}")
    places = raw.get("places", "scene")
    if places not in ("scene", "folder"):
        raise ValueError(f"places must be 'scene' or 'folder' (the images of a folder cut from one picture), got "
                         f"{places!r}")
    domain = raw.get("domain") or {}
    if not isinstance(domain, dict):
        raise ValueError(f"domain must be a mapping (platform, gsd_m, region, source, data_kind), got {domain!r}")
    gsd = domain.get("gsd_m")
    if gsd is not None and (isinstance(gsd, bool) or not isinstance(gsd, (int, float)) or not gsd > 0):
        raise ValueError(f"domain.gsd_m must be a positive number of metres per pixel or null, got {gsd!r}")
    if domain.get("data_kind", "real") not in ("real", "generated"):
        raise ValueError(f"domain.data_kind must be 'real' (imagery of the ground) or 'generated' (made by a "
                         f"program), got {domain.get('data_kind')!r}")
    table = ClassTable(p, classes, values, ignore, ignore_colors, [int(v) for v in ignore_values], fmt, tol,
                       group_by=group_by, places=places, name=str(raw.get("name") or "folder"), domain=dict(domain))
    for key in ("images", "masks"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key]:
                raise ValueError(f"{key} must be a folder path relative to the data root, got {raw[key]!r}")
            setattr(table, key, raw[key])
    for key in ("mask_suffixes", "image_suffixes"):
        if key in raw:
            v = raw[key] or []
            if not all(isinstance(s, str) for s in v):
                raise ValueError(f"{key} must be a list of strings, got {v!r}")
            setattr(table, key, list(v))
    return table


def _walk(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames
                  if f.lower().endswith((*IMAGE_SUFFIXES, ".bmp", ".gif")) and not f.startswith(".")]
    return sorted(found)


def _strip(stem: str, suffixes: list[str]) -> str:
    low = stem.lower()
    for s in sorted(suffixes, key=len, reverse=True):
        if s and low.endswith(s.lower()) and len(low) > len(s):
            return stem[:-len(s)]
    return stem


class FolderSeg(SegTiles):
    """A generic labeled folder: images and masks matched by name, classes from a YAML class table.

    Layout::

        <root>/images/**/<name>.{png,jpg,jpeg,tif,tiff}
        <root>/masks/**/<name>[<suffix>].{png,tif,tiff,...}     suffix e.g. _mask, _label (see mask_suffixes)

    or, where ``<root>/images`` does not exist, one such pair per subfolder (the Kaggle Dubai layout)::

        <root>/<part>/images/**/<name>.jpg  with  <root>/<part>/masks/**/<name>.png

    An image and a mask match when their paths below ``images/`` and ``masks/`` agree without the file suffix
    (``tile_1/part_001.jpg`` <-> ``tile_1/part_001.png``), after dropping a mask suffix such as ``_mask`` (and an
    image suffix such as ``_sat``); failing that, by file name alone when that is unique. Images of any size:
    PNG, JPEG, TIFF via PIL, GeoTIFFs PIL cannot read via rasterio; 16-bit bands stretched to 8 bit by their
    2-98 percentiles; grey replicated; alpha dropped.

    The class table (YAML)::

        classes:                        # in class-index order
          - {name: building, color: [60, 16, 152]}     # index masks: optional 'value' (default: position)
        ignore_index: 255               # written into the masks for unlabeled pixels
        ignore_colors: [[155, 155, 155], [0, 0, 0]]   # colour masks: these colours are unlabeled
        ignore_values: []               # index masks: these values are unlabeled
        mask_format: color              # or index
        color_tolerance: 0              # > 0: a colour within this distance (per channel) of a class is that class
        images: images                  # layout options: folders (relative to root), name suffixes,
        masks: masks                    #   and the unit kept whole when splitting:
        group_by: file                  #   'file' (each image) or 'folder' (each folder of images)

    Whatever ``mask_format`` says, a mask is read by what it shows (``core.data.mask_read``): a palette PNG through
    its palette when its colours are class colours (the palette order may differ per file), else as indices; a
    greyscale or 16-bit mask as indices (a colour-coded set tries its grey colours first); RGB by colour.
    Colours (or values) in neither list are mapped to ignore with a warning that counts their pixels.
    The split is seeded (by image, or by folder with ``group_by: folder``).
    """

    format_name = "folder"
    title = "Image folder"

    def __init__(self, root: str | Path, class_table: str | Path | ClassTable, tile_size: int = 256,
                 tile_overlap: int = 0, **kwargs: Any):
        self.table = class_table if isinstance(class_table, ClassTable) else load_class_table(class_table)
        self.classes = self.table.classes
        self.ignore_index = self.table.ignore_index
        super().__init__(root, tile_size, tile_overlap, **kwargs)

    @property
    def name(self) -> str:
        return self.table.name

    def cache_params(self) -> Any:
        t = self.table.to_json()
        t.pop("path")
        if self.table.mask_format == "index":  # palette masks are read by their colours since rule 2
            t["mask_rule"] = MASK_RULE
        return t

    def _roots(self, sub: str) -> list[tuple[str, Path]]:
        """``<root>/<sub>``, or else every ``<root>/*/<sub>`` (e.g. Kaggle's ``Tile 1/images``), with its prefix."""
        direct = self.root / sub
        if direct.is_dir():
            return [("", direct)]
        return [(p.parent.relative_to(self.root).as_posix() + "/", p)
                for p in sorted(self.root.glob(f"*/{sub}")) if p.is_dir()]

    def find_scenes(self) -> list[Scene]:
        t = self.table
        img_roots, mask_roots = self._roots(t.images), self._roots(t.masks)
        if not img_roots:
            raise DataError(f"Image folder: no images folder {self.root / t.images} (nor {self.root}/*/{t.images})")
        if not mask_roots:
            raise DataError(f"Image folder: no masks folder {self.root / t.masks} (nor {self.root}/*/{t.masks})")
        mask_dirs = {d for _, d in mask_roots}
        images = [(pre, d, p) for pre, d in img_roots for p in _walk(d)
                  if not any(m in p.parents for m in mask_dirs)]  # masks/ may sit inside images/
        masks = [(pre, d, p) for pre, d in mask_roots for p in _walk(d)]
        where = " ".join(str(d) for _, d in img_roots[:2]) + (" ..." if len(img_roots) > 2 else "")
        if not images:
            raise DataError(f"Image folder: no images (PNG, JPEG, TIFF) in {where}")
        if not masks:
            raise DataError(f"Image folder: no masks (PNG, TIFF) in {' '.join(str(d) for _, d in mask_roots[:2])}")

        def keys(pre: str, base: Path, p: Path, suffixes: list[str]) -> tuple[str, str]:
            rel = p.relative_to(base).with_suffix("")
            stem = _strip(rel.name, suffixes)
            return (pre + (rel.parent / stem).as_posix()).lower(), stem.lower()

        by_full: dict[str, list[Path]] = {}
        by_stem: dict[str, list[Path]] = {}
        for pre, base, m in masks:
            full, stem = keys(pre, base, m, t.mask_suffixes)
            by_full.setdefault(full, []).append(m)
            by_stem.setdefault(stem, []).append(m)
        # a mask whose path is another image's is that image's: never the by-name match of an image without one (a
        # review: tile_1's missing mask was taken from tile_3, the test tile, and trained on without a word)
        claimed = {m for pre, base, img in images for suffixes in ([], t.image_suffixes)
                   for m in by_full.get(keys(pre, base, img, suffixes)[0], [])}
        scenes = []
        for pre, base, img in images:
            rel = img.relative_to(base)
            shown = img.relative_to(self.root).as_posix()
            cands: list[Path] = []
            for suffixes in ([], t.image_suffixes):
                full, stem = keys(pre, base, img, suffixes)
                named = by_stem.get(stem, [])
                unique = named if len(named) == 1 and named[0] not in claimed else []
                cands = by_full.get(full) or unique
                if cands:
                    break
            if not cands:
                raise DataError(f"Image folder: no mask for {shown} in {mask_roots[0][1]} (looked for "
                                f"{rel.with_suffix('').as_posix()}[{'|'.join(t.mask_suffixes[:3])}|...].png/.tif)")
            if len(cands) > 1:
                raise DataError(f"Image folder: several masks for {shown}: "
                                f"{', '.join(c.relative_to(self.root).as_posix() for c in cands)}")
            sub = "" if rel.parent == Path(".") else rel.parent.as_posix()
            folder = "/".join(p for p in (pre.rstrip("/"), sub) if p) or "."
            group = folder if t.group_by == "folder" else None
            scenes.append(Scene(pre + rel.with_suffix("").as_posix(), img, cands[0], None, group))
        return scenes

    def mask_table(self) -> MaskTable:
        t = self.table
        return MaskTable.of_classes(t.classes, t.ignore_index, ignore_colors=tuple(map(tuple, t.ignore_colors)),
                                    values=tuple(t.values), ignore_values=tuple(t.ignore_values),
                                    tolerance=t.color_tolerance, coding=t.mask_format)
