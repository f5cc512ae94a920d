"""What a detector did in a run on unlabeled imagery: how often it flagged, how often its treatment acted, and the
similarities it flagged at, from ``fns.jsonl`` alone.

Why apart from ``fn_report``: flag *quality* (precision against reference selectors, the oracle) needs labels; a
practitioner pretraining on their own unlabeled folder still needs to know whether FALSE did anything at all, and
``fn-report`` used to answer with a refusal only. Nothing here is a quality figure, and the report says so.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..config import PretrainConfig
from ..store.runs import Run
from .fn_report import detector_of
from .fn_scoring import load_pairs, treatment_of_run

NO_LABELS = ("its data set has no labels, so how many flags are true false negatives cannot be measured (no "
             "precision, no reference selectors, no oracle); pretrain on a labeled set (deepglobe, potsdam, vaihingen, "
             "loveda, synthetic, or a folder with data.class_table) to score them")


def _spread(values: np.ndarray) -> dict[str, float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"p10": float(p10), "median": float(p50), "p90": float(p90)}


def unlabeled_summary(run: Run, cfg: PretrainConfig) -> dict[str, Any]:
    """The report of a run whose flags cannot be scored: its detector, treatment and flag similarities."""
    pairs = load_pairs(run)
    effect = treatment_of_run(run)
    steps = effect.steps if effect is not None else int(run.status().get("step") or 0)
    return {
        "run": run.id, "method": cfg.method, "data": cfg.data.name, "labeled": False, "note": NO_LABELS,
        "detector": detector_of(cfg), "steps": steps, "pairs_flagged": int(len(pairs)),
        "steps_with_flags": int(pairs["step"].nunique()) if len(pairs) else 0,
        "treatment": None if effect is None else {
            "caption": effect.caption(), "verdict": effect.verdict(), "advice": effect.advice(),
            "treated": effect.calibrated, "steps_treated": effect.steps_calibrated, "per_step": effect.per_step},
        "candidate_cos": _spread(pairs["cos"].to_numpy(float)) if len(pairs) else None,
        "positive_cos": _spread(pairs["cos_pos"].to_numpy(float)) if len(pairs) else None,
    }


def _cos(spread: dict[str, float] | None) -> str:
    if spread is None:
        return "not recorded"
    return f"median {spread['median']:.3f} (10-90 %: {spread['p10']:.3f} to {spread['p90']:.3f})"


def summary_lines(r: dict[str, Any]) -> list[str]:
    """The summary as the lines the CLI prints."""
    det = r["detector"]
    lines = [f"run {r['run']}: {r['method']} on {r['data']}, {det['label']} (detector {det['name']}, treatment "
             f"{det['treatment']}): {r['pairs_flagged']} flagged pairs over {r['steps_with_flags']} of {r['steps']} "
             "steps",
             f"NOTE: {r['note']}"]
    treatment = r.get("treatment")
    if treatment:
        lines.append(f"  {treatment['verdict'] or treatment['caption']}")  # a verdict holds the figures too
        if treatment.get("advice"):
            lines.append(f"  {treatment['advice']}")
    if r["pairs_flagged"]:
        lines.append(f"  cosine of the flagged negatives       {_cos(r['candidate_cos'])}")
        lines.append(f"  cosine of their anchors' positives    {_cos(r['positive_cos'])}")
        if det["name"] == "fnsd":
            lines.append("  (FNSD flags the negatives whose cosine is closest to the anchor-positive one; FNCC "
                         "calibrates a flag only where that positive cosine reaches loss.threshold)")
    return lines
