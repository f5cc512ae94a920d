"""How classes are drawn on screen and in files: a class's ``display`` colour where its data set gives one, else
its mask colour (``color``).

Why two colours: a data set's mask colours decode its label files and must stay as published (Dubai draws water
orange and roads light blue); what people read in an overlay, a legend or a GeoTIFF's colour table is better in
the colours maps use (water blue, roads grey). Decoding (``data/seg_*``, ``seg/label_score``) reads ``color``
only; everything that draws reads :func:`display_rgb`.
"""
from __future__ import annotations

from typing import Any


def _rgb(value: Any) -> tuple[int, int, int] | None:
    try:
        if value is not None and len(value) >= 3:
            r, g, b = (min(max(int(v), 0), 255) for v in list(value)[:3])
            return r, g, b
    except (TypeError, ValueError):
        pass
    return None


def display_rgb(cls: Any) -> tuple[int, int, int] | None:
    """The colour a class is drawn in (None when it names none: callers pick a fallback)."""
    if not isinstance(cls, dict):
        return None
    return _rgb(cls.get("display")) or _rgb(cls.get("color"))


def css_rgb(cls: Any) -> str:
    """``rgb(r,g,b)`` of :func:`display_rgb` for plotly and HTML (black when the class names no colour)."""
    r, g, b = display_rgb(cls) or (0, 0, 0)
    return f"rgb({r},{g},{b})"
