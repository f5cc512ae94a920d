"""Settings added after a run was made, read for that run as it was made: a run folder's ``config.yaml`` (and a
card's config) is read through :func:`as_made` before it is validated, so that a new setting's default, or one taken
from a file this project changed since (a class table's ``group_by``), does not move an old run's tiles."""
from __future__ import annotations

from typing import Any

from ..repo import REPO_ROOT, in_repo

# the project's class tables whose ``group_by`` changed, with what they said before (runs made then split so)
CHANGED_TABLES = {"configs/classes/dubai.yaml": "file"}  # 'folder' since data.split_unit recorded the unit


def legacy_split_unit(data: Any) -> None:
    """A labeled image folder's ``data`` section written before ``data.split_unit`` existed (in place): over a table
    of this project whose ``group_by`` changed since, the unit it said then; over any other table, unset (its
    ``group_by`` as it is now, as when the run was made unless someone edited it: a pretraining or fine-tuning run's
    resume and flag report then stop on its recorded scenes, ``core.data.split_check``)."""
    if not (isinstance(data, dict) and data.get("name") == "folder" and data.get("class_table")
            and "split_unit" not in data):
        return
    where = in_repo(str(data["class_table"])).resolve()
    for table, unit in CHANGED_TABLES.items():
        if where == (REPO_ROOT / table).resolve():
            data["split_unit"] = unit


def as_made(raw: Any) -> Any:
    """A stored run (or card) config as the run was made (in place; the same object back): every ``data``
    section, a comparison's none (its units are runs of their own)."""
    if isinstance(raw, dict):
        legacy_split_unit(raw.get("data"))
    return raw


__all__ = ["CHANGED_TABLES", "as_made", "legacy_split_unit"]
