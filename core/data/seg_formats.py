"""Labeled segmentation data sets in their published on-disk layouts: ISPRS Potsdam and Vaihingen, DeepGlobe Land
Cover, LoveDA (a generic images/ + masks/ folder with a YAML class table: ``seg_folder``).

Each class only finds its scenes and decodes its masks; tiling, caching and the item interface come from
:class:`~core.data.seg_base.SegTiles`. Every layout problem is a :class:`DataError` that names what is missing.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

from ..imaging.bands import RGB
from .paths import DataError
from .seg_base import Scene, SegTiles
from .mask_read import MASK_RULE, MaskTable
from .seg_files import class_table
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

    def mask_table(self) -> MaskTable:
        return MaskTable.of_classes(self.classes, self.ignore_index, ignore_colors=((0, 0, 0),) if self.eroded else (),
                                    threshold=True, coding="color")


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

    def __init__(self, root: str | Path, tile_size: int = 256, tile_overlap: int = 0, eroded: bool = False,
                 **kwargs: Any):
        bands = kwargs.get("bands")
        if bands is not None and any(b not in RGB and not (isinstance(b, int) and b < 3) for b in bands):
            # a band beyond R, G, B (NIR): the 4-band RGBIR orthophotos instead of the RGB ones
            self.image_dir, self.image_glob = "4_Ortho_RGBIR", "top_potsdam_*_RGBIR.tif"
            self.image_pattern = r"top_potsdam_(\d+_\d+)_RGBIR\.tif"
        super().__init__(root, tile_size, tile_overlap, eroded, **kwargs)

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
    file_bands = ("NIR", "R", "G")  # IRRG false colour: data.bands names them so (unset: kept as they are)
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

    def mask_table(self) -> MaskTable:
        return MaskTable.of_classes(self.classes, self.ignore_index, ignore_colors=((0, 0, 0),), threshold=True,
                                    coding="color")


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

    def cache_params(self) -> Any:
        return dict(mask_rule=MASK_RULE)  # palette masks are read by their colours since rule 2

    def mask_table(self) -> MaskTable:
        return MaskTable.of_classes(self.classes, self.ignore_index, values=tuple(range(1, 8)), ignore_values=(0,),
                                    coding="index")


__all__ = ["DeepGlobe", "LoveDA", "Potsdam", "Vaihingen", "ISPRS_CLASSES", "DEEPGLOBE_CLASSES", "LOVEDA_CLASSES",
           "POTSDAM_TEST_IDS", "VAIHINGEN_TEST_AREAS"]
