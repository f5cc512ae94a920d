"""Labeled segmentation data sets in their published on-disk layouts: ISPRS Potsdam and Vaihingen, DeepGlobe Land
Cover, LoveDA, and a generic images/ + masks/ folder with a YAML class table.

Each class only finds its scenes and decodes its masks; tiling, caching and the item interface come from
:class:`~core.data.seg_base.SegTiles`. Every layout problem is a :class:`DataError` that names what is missing.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .paths import DataError
from .seg_base import IMAGE_SUFFIXES, Scene, SegTiles, resolve_root
from .seg_files import (IGNORE_INDEX, ColorCode, Decoded, IndexCode, class_table, read_mask_index,
                        read_mask_rgb)
from .synthetic import CLASSES as _POTSDAM

ISPRS_CLASSES = class_table(_POTSDAM)  # impervious surfaces, building, low vegetation, tree, car, clutter
POTSDAM_TEST_IDS = ("2_13", "2_14", "3_13", "3_14", "4_13", "4_14", "4_15", "5_13", "5_14", "5_15", "6_13",
                    "6_14", "6_15", "7_13")
VAIHINGEN_TEST_AREAS = (2, 4, 6, 8, 10, 12, 14, 16, 20, 22, 24, 27, 29, 31, 33, 35, 38)
DEEPGLOBE_CLASSES = class_table([("urban_land", (0, 255, 255)), ("agriculture_land", (255, 255, 0)),
                                 ("rangeland", (255, 0, 255)), ("forest_land", (0, 255, 0)), ("water", (0, 0, 255)),
                                 ("barren_land", (255, 255, 255))])
LOVEDA_CLASSES = class_table([("background", (255, 255, 255)), ("building", (255, 0, 0)), ("road", (255, 255, 0)),
                              ("water", (0, 0, 255)), ("barren", (159, 129, 183)), ("forest", (0, 255, 0)),
                              ("agriculture", (255, 195, 128))])  # the palette of the LoveDA repository


def _files(folder: Path, pattern: str) -> dict[str, Path]:
    """Files in ``folder`` whose name fully matches ``pattern`` (case-insensitive), keyed by the first group."""
    out = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            m = re.fullmatch(pattern, p.name, re.IGNORECASE)
            if m and p.is_file():
                out[m.group(1)] = p
    return out


def _warn_unlabeled_test(title: str, missing: list[str], where: str) -> None:
    if missing:
        warnings.warn(f"{title}: no labels for {len(missing)} test scene(s) in {where} (e.g. {missing[0]}; the "
                      "participants' release withholds them): left out; the test split is then drawn from the "
                      "training scenes by data.test_fraction", stacklevel=4)


class _ISPRS(SegTiles):
    """Shared by Potsdam and Vaihingen: one orthophoto folder, a labels folder under one of several names."""

    classes = ISPRS_CLASSES
    image_dir = ""
    image_pattern = ""
    image_glob = ""
    label_dirs: tuple[str, ...] = ()
    eroded_dirs: tuple[str, ...] = ()

    def __init__(self, root: str | Path, tile_size: int = 256, tile_overlap: int = 0, eroded: bool = False,
                 **kwargs: Any):
        self.eroded = bool(eroded)
        super().__init__(root, tile_size, tile_overlap, **kwargs)

    def cache_params(self) -> Any:
        return dict(eroded=self.eroded)

    def _label_name(self, sid: str) -> str:
        raise NotImplementedError

    def _scene_name(self, sid: str) -> str:
        raise NotImplementedError

    def _is_test(self, sid: str) -> bool:
        raise NotImplementedError

    def find_scenes(self) -> list[Scene]:
        img_dir = self.root / self.image_dir
        glob = self.image_glob
        if not img_dir.is_dir():
            raise DataError(f"{self.title}: no image folder {img_dir} (expected {glob} files)")
        images = _files(img_dir, self.image_pattern)
        if not images:
            raise DataError(f"{self.title}: no {glob} images in {img_dir}")
        dirs = self.eroded_dirs if self.eroded else self.label_dirs
        found = [self.root / d for d in dirs if (self.root / d).is_dir()]
        if not found:
            kind = "eroded-boundary labels folder" if self.eroded else "labels folder"
            raise DataError(f"{self.title}: no {kind} in {self.root}: expected {' or '.join(dirs)}")
        scenes, missing = [], []
        for sid, img in sorted(images.items(), key=lambda kv: [int(v) for v in kv[0].split("_")]):
            label = next((d / self._label_name(sid) for d in found if (d / self._label_name(sid)).is_file()), None)
            split = "test" if self._is_test(sid) else "train"
            if label is None:
                if split == "test":
                    missing.append(img.name)
                    continue
                raise DataError(f"{self.title}: no label image for {img.name} in {found[0]} "
                                f"(expected {self._label_name(sid)})")
            scenes.append(Scene(self._scene_name(sid), img, label, split))
        _warn_unlabeled_test(self.title, missing, str(found[0]))
        return scenes

    def decode_mask(self, path: Path) -> Decoded:
        code = ColorCode([c["color"] for c in self.classes], [(0, 0, 0)] if self.eroded else [],
                         self.ignore_index, threshold=True)
        return code.decode(read_mask_rgb(path))


class Potsdam(_ISPRS):
    """ISPRS 2D Semantic Labeling Contest, Potsdam: 38 true orthophotos of 6000 x 6000 px at 5 cm.

    Layout (as unpacked from the ISPRS download)::

        <root>/2_Ortho_RGB/top_potsdam_{a}_{b}_RGB.tif
        <root>/5_Labels_all/top_potsdam_{a}_{b}_label.tif                  (or 5_Labels_for_participants/)
        <root>/5_Labels_all_noBoundary/top_potsdam_{a}_{b}_label_noBoundary.tif   (eroded=True;
                                                                    or 5_Labels_for_participants_no_Boundary/)

    Classes (RGB-coded labels, channels read as on/off at 128): impervious surfaces (255, 255, 255), building
    (0, 0, 255), low vegetation (0, 255, 255), tree (0, 255, 0), car (255, 255, 0), clutter (255, 0, 0). In the
    eroded labels black (0, 0, 0) marks the boundary band: ignore.

    Split: the common one by tile id; test = 2_13 2_14 3_13 3_14 4_13 4_14 4_15 5_13 5_14 5_15 6_13 6_14 6_15
    7_13, the other 24 train (validation: a seeded share of the training scenes). Test scenes without labels
    (the participants' release) are left out with a warning.

    Citation: F. Rottensteiner, G. Sohn, J. Jung, M. Gerke, C. Baillard, S. Benitez, U. Breitkopf, "The ISPRS
    benchmark on urban object classification and 3D building reconstruction", ISPRS Annals I-3, 2012.
    https://www.isprs.org/education/benchmarks/UrbanSemLab/default.aspx
    """

    format_name = "potsdam"
    title = "Potsdam"
    image_dir = "2_Ortho_RGB"
    image_pattern = r"top_potsdam_(\d+_\d+)_RGB\.tif"
    image_glob = "top_potsdam_*_RGB.tif"
    label_dirs = ("5_Labels_all", "5_Labels_for_participants")
    eroded_dirs = ("5_Labels_all_noBoundary", "5_Labels_for_participants_no_Boundary")

    def _label_name(self, sid: str) -> str:
        return f"top_potsdam_{sid}_label_noBoundary.tif" if self.eroded else f"top_potsdam_{sid}_label.tif"

    def _scene_name(self, sid: str) -> str:
        return f"top_potsdam_{sid}"

    def _is_test(self, sid: str) -> bool:
        return sid in POTSDAM_TEST_IDS


class Vaihingen(_ISPRS):
    """ISPRS 2D Semantic Labeling Contest, Vaihingen: 33 true orthophoto patches (about 2000 x 2500 px, 9 cm).

    Layout::

        <root>/top/top_mosaic_09cm_area{N}.tif                      (IRRG false colour, 3 bands: kept as is)
        <root>/gts_for_participants/top_mosaic_09cm_area{N}.tif     (or ISPRS_semantic_labeling_Vaihingen_
                                                                     ground_truth_COMPLETE/)
        <root>/gts_eroded_for_participants/top_mosaic_09cm_area{N}_noBoundary.tif   (eroded=True; or
                                              ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE/)

    Classes: as Potsdam (impervious surfaces, building, low vegetation, tree, car, clutter; same colours; black
    = ignore in the eroded labels).

    Split: test areas 2 4 6 8 10 12 14 16 20 22 24 27 29 31 33 35 38, the other 16 train. Test areas without
    labels (the participants' release) are left out with a warning.

    Citation: F. Rottensteiner et al., "The ISPRS benchmark on urban object classification and 3D building
    reconstruction", ISPRS Annals I-3, 2012; M. Cramer, "The DGPF test on digital aerial camera evaluation",
    PFG 2010(2).
    """

    format_name = "vaihingen"
    title = "Vaihingen"
    image_dir = "top"
    image_pattern = r"top_mosaic_09cm_area(\d+)\.tif"
    image_glob = "top_mosaic_09cm_area*.tif"
    label_dirs = ("gts_for_participants", "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE")
    eroded_dirs = ("gts_eroded_for_participants", "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE")

    def _label_name(self, sid: str) -> str:
        return f"top_mosaic_09cm_area{sid}_noBoundary.tif" if self.eroded else f"top_mosaic_09cm_area{sid}.tif"

    def _scene_name(self, sid: str) -> str:
        return f"area{sid}"

    def _is_test(self, sid: str) -> bool:
        return int(sid) in VAIHINGEN_TEST_AREAS


_DG_SPLITS = {"train": "train", "valid": "val", "val": "val", "validation": "val", "test": "test"}


class DeepGlobe(SegTiles):
    """DeepGlobe 2018 Land Cover Classification (the paper's DGLC): 2448 x 2448 px satellite images at 50 cm.

    Layout (any depth)::

        <root>/**/<id>_sat.jpg   with   <id>_mask.png   beside it

    If the images sit in ``train/``, ``valid/`` (or ``val/``) and ``test/`` folders that hold masks, those are
    the splits; folders without any masks (the challenge's ``valid/`` and ``test/``) are left out with a warning.
    Otherwise the split is seeded.

    Classes (mask channels read as on/off at 128, as the challenge's scorer does): urban_land (0, 255, 255),
    agriculture_land (255, 255, 0), rangeland (255, 0, 255), forest_land (0, 255, 0), water (0, 0, 255),
    barren_land (255, 255, 255); unknown (0, 0, 0) is ignored.

    Citation: I. Demir, K. Koperski, D. Lindenbaum, G. Pang, J. Huang, S. Basu, F. Hughes, D. Tuia, R. Raskar,
    "DeepGlobe 2018: A Challenge to Parse the Earth through Satellite Images", CVPR Workshops 2018.
    """

    format_name = "deepglobe"
    title = "DeepGlobe"
    classes = DEEPGLOBE_CLASSES

    def find_scenes(self) -> list[Scene]:
        images = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            images += [Path(dirpath) / f for f in filenames if f.lower().endswith("_sat.jpg")]
        if not images:
            raise DataError(f"DeepGlobe: no *_sat.jpg images in {self.root}")
        by_dir: dict[Path, list[Path]] = {}
        for p in sorted(images):
            by_dir.setdefault(p.parent, []).append(p)
        scenes, unlabeled = [], []
        for folder, imgs in by_dir.items():
            masks = {p.name[:-len("_mask.png")] for p in folder.iterdir() if p.name.lower().endswith("_mask.png")}
            if not masks:
                unlabeled.append(folder)
                continue
            rel = folder.relative_to(self.root).parts
            split = _DG_SPLITS.get(rel[0].lower()) if rel else None
            for img in imgs:
                sid = img.name[:-len("_sat.jpg")]
                if sid not in masks:
                    raise DataError(f"DeepGlobe: no label image for {img.name} in {folder} (expected {sid}_mask.png)")
                name = "/".join([*rel, sid])
                scenes.append(Scene(name, img, folder / f"{sid}_mask.png", split))
        if not scenes:
            raise DataError(f"DeepGlobe: no *_mask.png label images beside the *_sat.jpg images in {self.root}")
        if unlabeled:
            warnings.warn(f"DeepGlobe: {len(unlabeled)} folder(s) of images without masks left out: "
                          f"{', '.join(str(u) for u in unlabeled[:3])}", stacklevel=3)
        return scenes

    def decode_mask(self, path: Path) -> Decoded:
        code = ColorCode([c["color"] for c in self.classes], [(0, 0, 0)], self.ignore_index, threshold=True)
        return code.decode(read_mask_rgb(path))


class LoveDA(SegTiles):
    """LoveDA: 1024 x 1024 px images at 0.3 m from Nanjing, Changzhou and Wuhan, urban and rural domains.

    Layout (the Zenodo zips unpacked into one folder; ``Train/Train/Urban`` also accepted)::

        <root>/{Train,Val,Test}/{Urban,Rural}/images_png/<n>.png
        <root>/{Train,Val,Test}/{Urban,Rural}/masks_png/<n>.png

    Masks are index-coded: 0 = no data (ignored), 1..7 = background, building, road, water, barren, forest,
    agriculture (classes 0..6 here, coloured with the palette of the LoveDA repository). Train and Val are the
    given splits; Test has no public masks and is skipped (the test split is drawn from Train).

    Citation: J. Wang, Z. Zheng, A. Ma, X. Lu, Y. Zhong, "LoveDA: A Remote Sensing Land-Cover Dataset for Domain
    Adaptive Semantic Segmentation", NeurIPS Datasets and Benchmarks 2021.
    """

    format_name = "loveda"
    title = "LoveDA"
    classes = LOVEDA_CLASSES

    def _split_dir(self, name: str) -> Path | None:
        for cand in (self.root / name, self.root / name / name, self.root / name.lower()):
            if any((cand / d / "images_png").is_dir() for d in ("Urban", "Rural")):
                return cand
        return None

    def find_scenes(self) -> list[Scene]:
        scenes = []
        for split_name, split in (("Train", "train"), ("Val", "val")):
            sdir = self._split_dir(split_name)
            if sdir is None:
                continue
            for domain in ("Urban", "Rural"):
                img_dir, mask_dir = sdir / domain / "images_png", sdir / domain / "masks_png"
                if not img_dir.is_dir():
                    continue
                if not mask_dir.is_dir():
                    raise DataError(f"LoveDA: no masks_png folder beside {img_dir}")
                imgs = sorted((p for p in img_dir.iterdir() if p.suffix.lower() == ".png"),
                              key=lambda p: (len(p.stem), p.stem))
                for img in imgs:
                    mask = mask_dir / img.name
                    if not mask.is_file():
                        raise DataError(f"LoveDA: no mask for {img.name} in {mask_dir}")
                    scenes.append(Scene(f"{split_name}/{domain}/{img.stem}", img, mask, split))
        if not scenes:
            raise DataError(f"LoveDA: no Train/ or Val/ folders with Urban|Rural/images_png + masks_png in {self.root}")
        return scenes

    def decode_mask(self, path: Path) -> Decoded:
        return IndexCode({v + 1: v for v in range(7)}, [0], self.ignore_index).decode(read_mask_index(path))


# ------------------------------------------------------------------------------------------------ generic
_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)]
MASK_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_gt", "_seg", "_segmentation", "_annotation", "-mask",
                 "-label")
TABLE_KEYS = {"name", "description", "source", "classes", "ignore_index", "ignore_colors", "ignore_values",
              "mask_format", "color_tolerance", "images", "masks", "mask_suffixes", "image_suffixes", "group_by",
              "domain"}


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
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise DataError(f"class table {p} is not valid YAML: {err}") from None
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
        unknown = set(c) - {"name", "color", "value"}
        if unknown:
            raise ValueError(f"classes[{k}] ({c['name']}): unknown key(s) {', '.join(sorted(unknown))}")
        color = _rgb(c["color"], f"classes[{k}] ({c['name']})") if "color" in c else list(_PALETTE[k % 12])
        value = c.get("value", k)
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"classes[{k}] ({c['name']}): value must be an integer >= 0, got {value!r}")
        classes.append({"name": c["name"], "color": color})
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
    domain = raw.get("domain") or {}
    if not isinstance(domain, dict):
        raise ValueError(f"domain must be a mapping (platform, gsd_m, region, source), got {domain!r}")
    gsd = domain.get("gsd_m")
    if gsd is not None and (isinstance(gsd, bool) or not isinstance(gsd, (int, float)) or not gsd > 0):
        raise ValueError(f"domain.gsd_m must be a positive number of metres per pixel or null, got {gsd!r}")
    table = ClassTable(p, classes, values, ignore, ignore_colors, [int(v) for v in ignore_values], fmt, tol,
                       group_by=group_by, name=str(raw.get("name") or "folder"), domain=dict(domain))
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

    Colours (or values) in neither list are mapped to ignore with a warning that counts their pixels.
    The split is seeded (by image, or by folder with ``group_by: folder``).
    """

    format_name = "folder"
    title = "Folder"

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
            raise DataError(f"Folder: no images folder {self.root / t.images} (nor {self.root}/*/{t.images})")
        if not mask_roots:
            raise DataError(f"Folder: no masks folder {self.root / t.masks} (nor {self.root}/*/{t.masks})")
        mask_dirs = {d for _, d in mask_roots}
        images = [(pre, d, p) for pre, d in img_roots for p in _walk(d)
                  if not any(m in p.parents for m in mask_dirs)]  # masks/ may sit inside images/
        masks = [(pre, d, p) for pre, d in mask_roots for p in _walk(d)]
        where = " ".join(str(d) for _, d in img_roots[:2]) + (" ..." if len(img_roots) > 2 else "")
        if not images:
            raise DataError(f"Folder: no images (PNG, JPEG, TIFF) in {where}")
        if not masks:
            raise DataError(f"Folder: no masks (PNG, TIFF) in {' '.join(str(d) for _, d in mask_roots[:2])}")

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
        scenes = []
        for pre, base, img in images:
            rel = img.relative_to(base)
            shown = img.relative_to(self.root).as_posix()
            cands: list[Path] = []
            for suffixes in ([], t.image_suffixes):
                full, stem = keys(pre, base, img, suffixes)
                unique = by_stem.get(stem, []) if len(by_stem.get(stem, [])) == 1 else []
                cands = by_full.get(full) or unique
                if cands:
                    break
            if not cands:
                raise DataError(f"Folder: no mask for {shown} in {mask_roots[0][1]} (looked for "
                                f"{rel.with_suffix('').as_posix()}[{'|'.join(t.mask_suffixes[:3])}|...].png/.tif)")
            if len(cands) > 1:
                raise DataError(f"Folder: several masks for {shown}: "
                                f"{', '.join(c.relative_to(self.root).as_posix() for c in cands)}")
            sub = "" if rel.parent == Path(".") else rel.parent.as_posix()
            folder = "/".join(p for p in (pre.rstrip("/"), sub) if p) or "."
            group = folder if t.group_by == "folder" else None
            scenes.append(Scene(pre + rel.with_suffix("").as_posix(), img, cands[0], None, group))
        return scenes

    def decode_mask(self, path: Path) -> Decoded:
        t = self.table
        if t.mask_format == "index":
            code = IndexCode(dict(zip(t.values, range(len(t.classes)))), [*t.ignore_values, t.ignore_index],
                             t.ignore_index)
            return code.decode(read_mask_index(path))
        code = ColorCode([c["color"] for c in t.classes], t.ignore_colors, t.ignore_index,
                         tolerance=t.color_tolerance)
        return code.decode(read_mask_rgb(path))


__all__ = ["ClassTable", "DeepGlobe", "FolderSeg", "LoveDA", "Potsdam", "Vaihingen", "load_class_table",
           "ISPRS_CLASSES", "DEEPGLOBE_CLASSES", "LOVEDA_CLASSES", "POTSDAM_TEST_IDS", "VAIHINGEN_TEST_AREAS"]
