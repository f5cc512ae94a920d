"""What the Segment page and the Gradio demo both show of a Segmentation: legend, area table, screen copy.

Neither streamlit nor gradio is imported here, so both front ends draw a result the same way.
"""
from __future__ import annotations

import html
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from core.imaging.colours import css_rgb
from core.seg.segmentation_result import Segmentation


def class_rgb(cls: dict[str, Any]) -> str:
    """The CSS colour a class is drawn in (its display colour: the overlay's, the legend's)."""
    return css_rgb(cls)


def readable_class(name: Any) -> str:
    """A class name as people write it (DeepGlobe's ``urban_land`` is "urban land"), for legends, charts and page
    tables only: report JSON, CSV and the Gradio API keep the card's names, which scripts match on."""
    return str(name).replace("_", " ")


def class_bar_marker(colours: list[str]) -> dict[str, Any]:
    """Bars in the class colours with a dark edge: a white class (ISPRS's impervious surfaces) on a white page."""
    return dict(color=colours, line=dict(color="rgba(70,70,70,0.85)", width=1.2))


def one_decimal(x: float) -> str:
    """``x`` to one decimal as the browser's tables write it (a tie goes up: 98.25 is 98.3), so that the legend and
    the areas table beside it agree; Python's ``:.1f`` sends a tie to the even digit (98.2)."""
    return str(Decimal(float(x)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def legend_html(seg: Segmentation) -> str:
    """Colour swatches with each class's share of the image, in one wrapping line (names escaped)."""
    items = "".join(
        "<span style='display:inline-flex;align-items:center;gap:6px;margin:2px 16px 2px 0'>"
        f"<span style='width:14px;height:14px;border-radius:3px;background:{class_rgb(cls)};"
        "border:1px solid rgba(128,128,128,.5)'></span>"
        f"{html.escape(readable_class(row['name']))} "
        f"<span style='opacity:.6'>{one_decimal(row['percent'])}%</span></span>"
        for cls, row in zip(seg.classes, seg.areas))
    return f"<div style='display:flex;flex-wrap:wrap;font-size:0.92rem'>{items}</div>"


RELATIVE_NOTE = "shares only: classes a guess"  # out of the domain, or too small to judge: the warning says which


def areas_frame(seg: Segmentation, area_column: str = "m²") -> pd.DataFrame:
    """Per class: pixels, percent and square metres (that column only when the pixel size is known). An
    out-of-domain result has no square metres and a ``caution`` column beside its shares, so the table says it even
    when copied alone."""
    frame = pd.DataFrame([{"class": a["name"], "pixels": a["pixels"], "percent": a["percent"],
                           area_column: a["square_metres"]} for a in seg.areas])
    if frame[area_column].isna().all():
        frame = frame.drop(columns=area_column)
    if seg.areas_relative_only:
        frame["caution"] = RELATIVE_NOTE
    return frame


def screen_copy(seg: Segmentation, side: int) -> Segmentation:
    """The result at most ``side`` pixels on its longer side (nearest for the mask), so re-blending on a slider
    move stays instant; the downloads use the full-size result."""
    h, w = seg.mask.shape
    scale = side / max(h, w)
    if scale >= 1:
        return seg
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def small(picture: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(picture).resize(size, Image.BILINEAR))

    return Segmentation(rgb=small(seg.rgb), mask=np.asarray(Image.fromarray(seg.mask).resize(size, Image.NEAREST)),
                        classes=seg.classes, areas=seg.areas, views={k: small(v) for k, v in seg.views.items()},
                        bands=seg.bands, domain=seg.domain)


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def choice_parts(why: str) -> list[str]:
    """The automatic choice's reasons, one per clause: its one-line reason ran to 450 characters (winner, twins, near
    tie, the others' fits, what was ruled out), too long to read as one sentence. A single clause for a short one."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(why):  # "; " between clauses, never inside the parentheses of one
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and why.startswith("; ", i):
            parts.append(why[start:i])
            start = i + 2
    return [p for p in (*parts, why[start:]) if p]
