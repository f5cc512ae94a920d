"""A tested run's score as the fine-tuning and probe commands print it: the scenes by name, the figures, whether they
are unseen, then the IoU of every class. One function, so that the two commands say the same (a walkthrough found
the fine-tuning command's last line bare: no scenes, no classes, no word that its encoder had read the test scenes)."""
from __future__ import annotations

from typing import Any

from ..store.run_summary import test_not_unseen
from .metrics import iou_lines, scores_text
from .scene_role import scored_scenes_text


def score_lines(result: dict[str, Any], scenes: Any = None, unit: str | None = None, after: str = "") -> list[str]:
    """The lines of a ``test_metrics.json``: "test (whole scenes: 3 scenes (a, b, c)): mIoU ...; NOT an unseen score
    (the warning above)" plus ``after`` (e.g. the time it took), then one line per class. ``scenes`` and ``unit``: the
    data's named test scenes and split unit, so that the images of a folder scene are counted as one scene."""
    named = scored_scenes_text(list(result.get("scenes") or []), scenes, name_them=True, unit=unit)
    where = f" (whole scenes: {named})" if named else ""
    seen = "; NOT an unseen score (the warning above)" if test_not_unseen(result) else ""  # a val-only note: unseen
    lines = [f"{result.get('split', 'test')}{where}: {scores_text(result['miou'], result['oa'], result['kappa'])}"
             f"{seen}{after}"]
    iou = result.get("iou")
    if isinstance(iou, dict):
        lines += iou_lines({str(k): v for k, v in iou.items() if isinstance(v, (int, float))})
    elif isinstance(iou, list) and isinstance(result.get("classes"), list) and len(iou) == len(result["classes"]):
        lines += iou_lines({str(c): v for c, v in zip(result["classes"], iou) if isinstance(v, (int, float))})
    return lines
