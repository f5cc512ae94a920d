"""What the Gradio demo hands back for a result: the area table of its API, the info and label-score text, and
the files it offers for download (a folder per call, the last few kept).

Why apart from ``workbench.gradio_app``: these are pure functions of a ``Segmentation`` or ``LabelScore`` and the
files they write; the app module is about the page, its events and its budgets.
"""
from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from core.data.paths import scratch_dir, temp_dir_for
from core.imaging.colours import display_rgb
from core.seg.domain import FIT_SCALE
from core.seg.label_score import LabelScore
from core.seg.scene_role import NOT_RECOGNISED, role_note
from core.seg.segmentation_result import Segmentation, shared_report
from workbench.segment_view import areas_frame

DISPLAY_SIDE = 2048  # the overlay shown in the page is at most this many pixels on its longer side
KEEP_CALLS = 16  # output folders of this many recent calls are kept (gradio has copied older ones to its cache)


API_AREA_COLUMNS = ["class", "pixels", "percent", "square_metres", "caution", "colour"]


def api_areas(seg: Segmentation) -> Any:
    """The area table as the demo and its API give it: per class its pixels, percent, square metres (empty where the
    pixel size is unknown or the image out of the model's domain), the caution of an out-of-domain result (else
    empty) and the colour it is drawn in (hex), which is all the legend shows. The same columns for every image, so
    a client reads them by position (a review's ``row[3]`` was a colour, an area or a caution by turns)."""
    frame = areas_frame(seg, "square_metres")
    for column, empty in (("square_metres", None), ("caution", "")):
        if column not in frame:
            frame[column] = empty
    frame = frame.round({"percent": 3, "square_metres": 1})
    colours = {c.get("name"): display_rgb(c) or (0, 0, 0) for c in seg.classes}
    frame["colour"] = ["#{:02x}{:02x}{:02x}".format(*colours.get(name, (0, 0, 0))) for name in frame["class"]]
    return frame[API_AREA_COLUMNS]


LABEL_COLUMNS = ["class", "IoU (%)", "label pixels"]


def label_markdown(name: str, scored: LabelScore, seg: Segmentation) -> str:
    """The scores against a label mask in a few words (the page's summary), with what a score needs beside it: the
    model that made it, the out-of-domain warning and the notes (a scene the model saw is no unseen score), so a
    client calling only the score still gets them."""
    s = scored.scores
    text = (f"**{name}**: mIoU **{100 * s.miou:.1f} %**{scored.mask_classes_words()}, "
            f"pixel accuracy **{100 * s.overall_accuracy:.1f} %** "
            f"(read as {scored.how}; {scored.left_out_text()} left out: ignore value, colours of no class, no data)")
    note = scored.absent_note(seg.classes)
    unknown = scored.unknown_note()
    lines = [text + (f"\n\n{unknown}." if unknown else "") + (f"\n\nℹ️ {note}" if note else "")]
    if seg.inference:  # which segmentation was scored: /score re-segments with its own settings when not kept
        lines.append(f"- scored the segmentation made with {seg.inference_words()}")
    if seg.model:
        lines.append(f"- model {seg.model_line('**')}")
    lines += [f"- {n}" for n in seg.notes]
    if not role_note(seg.notes):  # the notes say it when it is one of the model's scenes
        lines.append(f"- {NOT_RECOGNISED}")
    if seg.warning:
        lines.insert(0, f"⚠️ **{seg.warning}**\n")
    return "\n".join(lines)


def label_table(scored: LabelScore, classes: list[dict[str, Any]]) -> Any:
    """IoU per class (%; empty where the class is in neither the labels nor the prediction) and its label pixels."""
    rows = scored.iou_rows(classes)
    # object columns: an empty IoU stays None, JSON's null (a float column makes it NaN, which strict parsers refuse)
    return pd.DataFrame([[r["class"], None if r["iou"] is None else round(100 * r["iou"], 2), r["label pixels"]]
                         for r in rows], columns=LABEL_COLUMNS, dtype=object)


def info_markdown(name: str, seg: Segmentation, pixel_size_m: float | None) -> str:
    h, w = seg.mask.shape
    parts = [f"**{name}**: {w} × {h} pixels"]
    if seg.profile is not None:
        parts.append("georeferenced" + (f", {pixel_size_m:.3g} m/pixel" if pixel_size_m else ""))
    if max(h, w) > DISPLAY_SIDE:
        parts.append(f"overlay shown at {DISPLAY_SIDE} pixels on the longer side; the downloads are full size")
    lines = ["; ".join(parts)]
    if seg.warning:
        lines.insert(0, f"⚠️ **{seg.warning}**\n")
    if seg.model:
        lines.append(f"- model {seg.model_line('**')}")
    lines += [f"- {note}" for note in seg.notes]
    if seg.domain is not None and seg.domain.score is not None:  # a review read 0.05 and 0.77 with no scale
        lines.append(f"- {FIT_SCALE}")
    return "\n".join(lines)


OUTPUTS = "gradio-outputs"  # each demo's folder is a temp folder of this name, with its process id


class Outputs:
    """A folder per call for the files the page offers; only the last KEEP_CALLS folders are kept. The folders that
    killed demos left behind (a review found them piling up under the data root) are removed when a demo starts, by
    their process id, as a data cache's dead writers' are (``core.data.paths.temp_dir_for``): a live demo's stays."""

    def __init__(self) -> None:
        self.root = temp_dir_for(scratch_dir() / OUTPUTS)
        self.calls = self.root / "calls"
        self.calls.mkdir()
        self.lock = threading.Lock()

    def new(self) -> Path:
        with self.lock:
            folders = sorted(self.calls.iterdir(), key=lambda p: p.stat().st_mtime)
            for old in folders[:max(0, len(folders) - KEEP_CALLS + 1)]:
                shutil.rmtree(old, ignore_errors=True)
            out = self.calls / uuid.uuid4().hex[:12]
            out.mkdir()
            return out

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def overlay_file(view: Segmentation, opacity: float, stem: str, out: Path) -> str:
    """The overlay as a PNG named after the upload: the page's download button (and an API client) then saves
    ``<name>_overlay.png``, not Gradio's ``image.png`` for every image."""
    path = out / f"{stem}_overlay.png"
    Image.fromarray(view.overlay(opacity)).save(path, compress_level=3)  # the screen copy, at most DISPLAY_SIDE
    return str(path)


def write_report(seg: Segmentation, stem: str, out: Path, name: str = "") -> str:
    """The report JSON under ``out``, naming the model by its file (the server's folders are not the visitor's
    business)."""
    path = out / f"{stem}_report.json"
    path.write_bytes(shared_report(seg, name))
    return str(path)


def write_downloads(seg: Segmentation, stem: str, out: Path, name: str = "") -> tuple[str, list[str]]:
    """The mask PNG, and the areas CSV, the report and the GeoTIFF (when georeferenced), written under ``out``."""
    mask = out / f"{stem}_mask.png"
    mask.write_bytes(seg.mask_png())
    extras = [out / f"{stem}_areas.csv", Path(write_report(seg, stem, out, name))]
    extras[0].write_text(seg.areas_csv())
    tif = seg.geotiff()
    if tif is not None:
        extras.append(out / f"{stem}_mask.tif")
        extras[-1].write_bytes(tif)
    return str(mask), [str(p) for p in extras]
