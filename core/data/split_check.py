"""Whether a labeled data set still splits as it did for a run: a resume and a flag report index its tiles and
scenes, so a changed data folder, class table or split unit (``data.split_unit``) must stop them, not move them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .paths import DataError


def check_same_split(before: Any, now: Any, config: Path) -> None:
    """DataError naming the first split whose scenes differ between the run's record (``before``: split -> scene
    names) and the data set now (``now``); nothing when either is unknown. ``config``: the run's config file, where
    the unit it was split by is set back."""
    if not (isinstance(before, dict) and isinstance(now, dict)):
        return
    for split in sorted(set(before) | set(now)):
        was, is_ = sorted(map(str, before.get(split) or [])), sorted(map(str, now.get(split) or []))
        if was != is_:
            odd = sorted(set(was) ^ set(is_))
            raise DataError(f"the run's {split} split held {len(was)} scene(s), its data set now gives {len(is_)} "
                            f"({', '.join(odd[:3])}{' ...' if len(odd) > 3 else ''} differ): its data, class table or "
                            "split unit changed since the run, so its tiles would be other tiles; put the data back, "
                            f"or set data.split_unit in {config} to the unit it was split by (file or folder)")


__all__ = ["check_same_split"]
