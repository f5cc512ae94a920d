"""One segmented image as the interfaces use it: the ``Segmentation`` result, its report (the JSON contract) and the
files it is written to (palette mask PNG, colour and overlay PNGs, areas CSV, GeoTIFF with the class table).

Why apart from ``core.seg.segment``: the CLI, the Segment page and the Gradio demo all hold, show and write these;
producing one (model choice, windows, no-data, resampling) is ``core.seg.segment``'s job.
"""
from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .domain import DomainScore
from .infer import NODATA, colorize, overlay, palette
from ..imaging.tiffio import write_mask_geotiff

REPORT_VERSION = 2  # 2: a model's relative distance is "relative_distance" (it was "fit", read as the domain fit)


NO_DATA_ROW = "no_data"  # the areas CSV's last row where pixels hold no data: counted, no share of its own


def _write_areas(f: Any, areas: list[dict[str, Any]], warning: str | None = None, nodata_pixels: int = 0) -> None:
    """The areas table; an out-of-domain result's warning in a last column, on every row (no square metres then).
    Why a column: the ``# warning:`` first line it was holds commas, and any reader not told to skip comments
    (pandas.read_csv, csv.reader, a spreadsheet) split it into a table of junk, exactly when the warning mattered.
    ``percent`` is of the classified pixels; pixels without data follow in a ``no_data`` row with their count and no
    percent (a review read 60.6 % water as a share of an image whose sixth held no data). The column is always
    there, empty without a warning: a batch's tables join into one (a review's in-domain and warned files differed)."""
    w = csv.writer(f)
    w.writerow(["class", "pixels", "percent", "square_metres", "warning"])
    said = [" ".join(warning.split()) if warning else ""]
    for row in areas:
        sq = row["square_metres"]
        w.writerow([row["name"], row["pixels"], f"{row['percent']:.4f}", "" if sq is None else f"{sq:.4f}", *said])
    if nodata_pixels:
        w.writerow([NO_DATA_ROW, nodata_pixels, "", "", *said])


@dataclass
class Segmentation:
    """One image's prediction and everything the interfaces show, offer for download and write in the report."""

    rgb: np.ndarray
    mask: np.ndarray  # class indices; NODATA where the image holds no data
    classes: list[dict[str, Any]]
    areas: list[dict[str, Any]]
    profile: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    domain: DomainScore | None = None
    pixel_size_m: float | None = None  # the image's, when known
    pixel_size_used_m: float | None = None  # what the model saw (differs when resampled)
    resampled: float | None = None  # scale applied for inference, None when not resampled
    nodata_share: float = 0.0
    model: dict[str, Any] = field(default_factory=dict)  # name, path, how chosen and why
    # Other pictures of a multi-band image (``core.imaging.band_preview.preview``), e.g. {"false": NIR-R-G}; ``rgb`` is true
    # colour. Only for the screen: reports and files are the same whatever is shown.
    views: dict[str, np.ndarray] = field(default_factory=dict)
    bands: list[str] | None = None  # the bands the model read, when not R, G, B
    label_score: dict[str, Any] | None = None  # against a label mask (``LabelScore.report``), when one was given
    label_masks: dict[str, Any] | None = None  # the card's rule for reading label masks (unlabeled colours, ...)
    inference: dict[str, Any] | None = None  # tile, overlap, tta: the settings that made the mask (a score says them)

    def inference_words(self) -> str:
        """The settings that made this mask, as a score beside it names them: "window 512 px, overlap 0.25"."""
        i = self.inference or {}
        if not i:
            return ""
        return f"window {i['tile']} px, overlap {i['overlap']:g}" + (", flip test-time augmentation" if i["tta"] else "")

    @property
    def warning(self) -> str | None:
        return self.domain.warning() if self.domain is not None else None

    @property
    def areas_relative_only(self) -> bool:
        """Out of the model's domain, or too small to be held against it: its classes are a guess, so areas are
        shares of the image, never square metres (``core.seg.segment`` leaves them out), and every output carries the
        warning beside them."""
        return self.warning is not None

    def model_line(self, emphasis: str = "") -> str:
        """The model, how and why it was chosen, and the image's in-domain score, once: auto's reason already
        states the score, so it is not repeated (one wording for the command line, the page and the demo).
        ``emphasis`` wraps the model's name (``**`` for markdown)."""
        if not self.model:
            return ""
        score = self.domain.score if self.domain is not None else None
        line = f"{emphasis}{self.model['name']}{emphasis} ({self.model['how']}: {self.model['why']})"
        if score is not None:
            overruled = "; out of the domain all the same, for what the fit cannot see (the warning says)" \
                if self.domain is not None and self.domain.overruled_fit else ""
            return line + ("" if self.model["how"] == "auto" else f"; domain fit {score:.2f}") + overruled
        reasons = self.domain.reasons if self.domain is not None else []
        reason = reasons[0] if reasons else "no fingerprint"
        if self.model["how"] == "auto" and reason in self.model["why"]:  # auto's reason already says why
            return line + "; domain fit unknown"
        return line + f"; domain fit unknown ({reason})"

    def overlay(self, opacity: float = 0.5, view: str = "true") -> np.ndarray:
        """The classes over the picture, ``view`` ``true`` colour (``rgb``) or another of ``views``."""
        return overlay(self.views.get(view, self.rgb), self.mask, self.classes, opacity)

    def color(self) -> np.ndarray:
        return colorize(self.mask, self.classes)

    def mask_png(self) -> bytes:
        return palette_png(self.mask, self.classes)

    def areas_csv(self) -> str:
        buf = io.StringIO()
        _write_areas(buf, self.areas, self.warning,
                     int((self.mask == NODATA).sum()))
        return buf.getvalue()

    def write_geotiff(self, path: Path) -> None:
        """The mask as a GeoTIFF with the input's CRS and transform, its warning in its tags when it has one (as the
        CSV's column); the input must have had a georeference."""
        assert self.profile is not None, "a GeoTIFF mask needs a georeferenced input"
        write_mask_geotiff(path, self.mask, self.profile, self.classes, self.warning)

    def geotiff(self) -> bytes | None:
        """``write_geotiff``'s bytes; None when the input had no georeference."""
        if self.profile is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "mask.tif"
            self.write_geotiff(path)
            return path.read_bytes()

    def report(self, image: str = "") -> dict[str, Any]:
        """What ``<stem>_report.json`` holds (the contract is in this module's docstring)."""
        return {"version": REPORT_VERSION, "image": image, "width": int(self.mask.shape[1]),
                "height": int(self.mask.shape[0]), "model": self.model,
                "domain": self.domain.as_dict() if self.domain is not None else None,
                "classes": [c["name"] for c in self.classes], "areas": self.areas,
                "areas_relative_only": self.areas_relative_only,
                "pixel_size_m": self.pixel_size_m, "pixel_size_used_m": self.pixel_size_used_m,
                "resampled": self.resampled, "nodata_share": round(float(self.nodata_share), 6),
                "warning": self.warning, "notes": list(self.notes), "label_score": self.label_score,
                "inference": self.inference}


def shared_report(seg: Segmentation, image: str = "") -> bytes:
    """The report JSON as the page and the demo hand it to a visitor: the model named by its file, not the server's
    folders (``write_outputs``, on the user's own machine, keeps the path)."""
    report = seg.report(image)
    if isinstance(report.get("model"), dict) and report["model"].get("path"):
        report["model"] = {**report["model"], "path": Path(report["model"]["path"]).name}
    return json.dumps(report, indent=1).encode()


def palette_png(mask: np.ndarray, classes: list[dict[str, Any]]) -> bytes:
    """The mask as a palette PNG: pixel values are class indices, shown in the class colours; no data (255) is
    transparent. Why: a plain 8-bit mask of indices 0-5 opens as an all-black image."""
    img = Image.fromarray(np.asarray(mask, np.uint8), mode="L").convert("P")
    img.putpalette(palette(classes).reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=NODATA if len(classes) < 256 else None)
    return buf.getvalue()


def write_outputs(seg: Segmentation, out_dir: Path, stem: str, image: str = "") -> dict[str, Path]:
    """Write one result as ``out_dir/<stem>_*`` (mask, colour, overlay, areas, report, GeoTIFF); return them."""
    out_dir = Path(out_dir)
    outputs = {"mask": out_dir / f"{stem}_mask.png", "color": out_dir / f"{stem}_color.png",
               "overlay": out_dir / f"{stem}_overlay.png", "areas": out_dir / f"{stem}_areas.csv",
               "report": out_dir / f"{stem}_report.json"}
    outputs["mask"].write_bytes(seg.mask_png())
    Image.fromarray(seg.color()).save(outputs["color"])
    Image.fromarray(seg.overlay(0.5)).save(outputs["overlay"])
    outputs["areas"].write_text(seg.areas_csv())
    if seg.profile is not None:
        outputs["geotiff"] = out_dir / f"{stem}_mask.tif"
        seg.write_geotiff(outputs["geotiff"])
    outputs["report"].write_text(json.dumps(seg.report(image), indent=1))
    return outputs
