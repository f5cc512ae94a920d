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


def baseline_line(run: Any, kind: str) -> str | None:
    """Beside a pretrained encoder's score: the same recipe's score from a random encoder on the same scenes, when a
    run of it is in the same runs folder, else the command that makes one (a walkthrough's FALSE fine-tune scored
    14.8 % with no word that a random encoder, run later, scored 15.4 %). None for a random encoder's own run."""
    from ..store.runs import list_runs
    from .baseline import random_baseline

    found = random_baseline(run, list_runs(run.path.parent))
    if found.state == "self":
        return None
    mine = run.read_json("test_metrics.json") or {}
    theirs = (found.record or {}).get("miou")
    if found.state == "done" and isinstance(theirs, (int, float)) and isinstance(mine.get("miou"), (int, float)):
        diff = 100 * (mine["miou"] - theirs)
        return (f"random-encoder baseline: mIoU {100 * theirs:.1f} % ({found.note}); this run {diff:+.1f} points, "
                "one run each: no interval (core.compare crosses seeds for one)")
    command = {"finetune": "core.finetune", "probe": "core.probe"}[kind]
    if found.state == "running":  # one exists: no second one (a review)
        return f"random-encoder baseline: {found.note}; its score comes when it has finished"
    if found.state == "unfinished" and found.run is not None:
        return f"random-encoder baseline: {found.note}; python -m {command} --resume {found.run.path} finishes it"
    name = f"baseline-{(run.config() or {}).get('name') or kind}"  # as the Fine-tune page's button names it
    return (f"random-encoder baseline: {found.note}; python -m {command} --config {run.path / 'config.yaml'} "
            f"model.init=random name={name} gives it (the Fine-tune page's baseline button too)")
