"""Whether a labeled data set still splits as it did for a run: a resume and a flag report index its tiles and
scenes, so a changed data folder, class table or split unit (``data.split_unit``) must stop them, not move them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .paths import DataError


def set_back(config: Path, unit: str | None) -> str:
    """What to do about a run whose data no longer splits as it did: the data back, or the other split unit."""
    other = {"file": "folder", "folder": "file"}.get(str(unit))
    how = (f"or, if its class table's group_by changed, set data.split_unit: {other} in {config} (it says {unit})"
           if other else f"or, if its class table's group_by changed, set data.split_unit (file or folder) in {config}")
    return f"put the data back, {how}"


def check_same_split(before: Any, now: Any, config: Path, unit: str | None = None) -> None:
    """DataError naming the first split whose scenes differ between the run's record (``before``: split -> scene
    names) and the data set now (``now``); nothing when either is unknown. ``config``: the run's config file, where
    the unit it was split by is set back; ``unit``: the one it says now."""
    if not (isinstance(before, dict) and isinstance(now, dict)):
        return
    for split in sorted(set(before) | set(now)):
        was, is_ = sorted(map(str, before.get(split) or [])), sorted(map(str, now.get(split) or []))
        if was != is_:
            odd = sorted(set(was) ^ set(is_))
            raise DataError(f"the run's {split} split held {len(was)} scene(s), its data set now gives {len(is_)} "
                            f"({', '.join(odd[:3])}{' ...' if len(odd) > 3 else ''} differ): its data, class table or "
                            f"split unit changed since the run, so its tiles would be other tiles; "
                            f"{set_back(config, unit)}")


__all__ = ["check_same_split", "set_back"]
