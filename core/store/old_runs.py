"""Settings added after a run was made, read for that run as it was made: a run folder's ``config.yaml`` (and a
card's config) is read through :func:`as_made` before it is validated, so a new setting's default, or a default
taken from a file that may have changed since (a class table's ``group_by``), never moves an old run's tiles."""
from __future__ import annotations

from typing import Any


def legacy_split_unit(data: Any) -> None:
    """A labeled image folder's ``data`` section written before ``data.split_unit`` existed (in place): it was split
    image by image, whatever its class table says now (the shipped Dubai table said ``group_by: file`` until
    ``split_unit`` recorded the unit; a pretraining run over a table of one's own that said ``folder`` then is
    stopped by the tile check of its resume and flag report, ``core.ssl.run_start.check_same_data``)."""
    if (isinstance(data, dict) and data.get("name") == "folder" and data.get("class_table")
            and "split_unit" not in data):
        data["split_unit"] = "file"


def as_made(raw: Any) -> Any:
    """A stored run (or card) config as the run was made (in place; the same object back): every ``data``
    section, a comparison's none (its units are runs of their own)."""
    if isinstance(raw, dict):
        legacy_split_unit(raw.get("data"))
    return raw


__all__ = ["as_made", "legacy_split_unit"]
