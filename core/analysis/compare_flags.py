"""Flag quality beside downstream mIoU for every method of a comparison (issue 27.4): does a detector that finds
more same-class negatives also give a better encoder?

For each method with a detector, every pretraining run of the comparison gets its flag report (``flag_report``,
cached in the run): the share of its flags whose tiles share the dominant class, all flags and across scenes only,
and the reference selectors on the very same batches (random, colour statistics, the run's encoder, the label
oracle). Figures are means over pretraining seeds with their spread; the mIoU difference is the comparison's own
paired one. One command: ``python -m core.fn_report COMPARISON_RUN``.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from ..store.runs import Run, open_run, read_jsonl
from .fn_report import FlagReportError, flag_report
from .fn_scoring import has_detector

SELECTORS = ("flags", "random", "colour", "encoder", "oracle")
Progress = Callable[[str, int, int], None]


def _mean_sd(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def _pretraining_runs(comparison: Run) -> dict[str, list[Run]]:
    """Each method's pretraining runs, in seed order, as the comparison recorded them."""
    units = [u for u in read_jsonl(comparison.path / "units.jsonl") if u.get("kind") == "pretrain" and u.get("run")]
    runs: dict[str, list[Run]] = {}
    for u in sorted(units, key=lambda u: (u["method"], u["pretrain_seed"])):
        runs.setdefault(u["method"], []).append(open_run(u["run"]))
    return runs


def comparison_flags(comparison: Run, use_encoder: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Per method: flag precision and the reference selectors (all flags and across scenes), over its seeds."""
    if comparison.kind() != "compare":
        raise FlagReportError(f"{comparison.path} is not a comparison run")
    from ..seg.compare_report import label  # lazy: seg's report reads this package's statistics

    result = comparison.read_json("comparison.json") or {}
    differences = {d["method"]: d for d in result.get("differences", [])}
    miou = {m["method"]: m for m in result.get("methods", [])}
    planned = [str(m) for m in (comparison.config() or {}).get("methods") or []]
    found = _pretraining_runs(comparison)
    listed = list(miou) or planned  # the comparison's order, finished or not
    order = [m for m in listed if m in found] + sorted(m for m in found if m not in listed)
    labels = {m: miou.get(m, {}).get("label") or label(m) for m in order}
    by_method = {m: found[m] for m in order if has_detector(found[m][0].config())}
    total, done, rows = sum(len(rs) for rs in by_method.values()), 0, []
    for method, runs in by_method.items():
        reports = []
        for run in runs:
            reports.append(flag_report(run, use_encoder=use_encoder))
            done += 1
            if progress is not None:
                progress("flag reports", done, total)
        row: dict[str, Any] = {"method": method, "label": labels.get(method, method), "runs": len(reports),
                               "detector": reports[0].get("detector"), "selection": reports[0].get("selection")}
        for scope, key in (("all", "selectors"), ("cross_scene", "cross_scene")):
            row[scope] = {s: _mean_sd([r[key][s]["precision"] for r in reports
                                       if (r.get(key) or {}).get(s, {}).get("precision") is not None])
                          for s in SELECTORS}
        row["pairs_per_run"] = statistics.fmean(r.get("pairs") or 0 for r in reports)  # the scored flags
        row["cross_scene_pairs_per_run"] = statistics.fmean(
            ((r.get("cross_scene") or {}).get("flags") or {}).get("pairs") or 0 for r in reports)
        row["miou"] = {k: miou.get(method, {}).get(k) for k in ("miou_mean", "miou_sd")}
        diff = differences.get(method)
        row["delta_miou_points"] = diff["miou_points"] if diff else None
        rows.append(row)
    return {"comparison": str(comparison.path), "name": result.get("name") or (comparison.config() or {}).get("name"),
            "methods": rows, "finished": bool(result)}


def _pct(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "n/a"
    sd = f" ± {100 * entry['sd']:.1f}" if entry["sd"] is not None else ""
    return f"{100 * entry['mean']:.1f}{sd}"


def _delta(d: dict[str, Any] | None, finished: bool = True, method: str = "") -> str:
    if not finished:
        return "n/a (unfinished)"
    if not d:  # a variant without one: its base ran in no common pretraining seed (or, in an old config, not at all)
        from ..seg.compare_report import base_of

        return "(base)" if base_of(method) is None else "n/a (no paired difference)"
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] {d['verdict']}"


def to_markdown(table: dict[str, Any]) -> str:
    """Two tables (all flags; across scenes only) and the note that says how to read them."""
    lines = [f"Flag quality of {table['name'] or 'the comparison'}'s pretraining runs: the share of flags whose "
             "two tiles share the dominant label class (%, mean ± sd over pretraining seeds), beside reference "
             "selectors that pick as many negatives for the same anchor tiles in the very same batches. A flag counts "
             "once per step however many of its tiles' views flagged it: an anchor tile's pick (per-anchor "
             "selection) or a tile pair (global).", ""]
    if not table.get("finished", True):
        lines += ["The comparison has not finished (no comparison.json): the flags of its finished pretraining runs, "
                  "no Δ mIoU yet (`python -m core.compare --resume` finishes it).", ""]
    scopes = (("all", "All flags"), ("cross_scene", "Across scenes only (both tiles from different scenes)"))
    for scope, title in scopes:
        lines += [f"**{title}**", "",
                  "| method | runs | scored flags per run | flags | random | colour stats | run's encoder | "
                  "oracle (labels) | Δ mIoU vs base (points) |", "|---|---|---|---|---|---|---|---|---|"]
        for row in table["methods"]:
            cells = [_pct(row[scope][s]) for s in SELECTORS]
            pairs = row["pairs_per_run" if scope == "all" else "cross_scene_pairs_per_run"]
            lines.append(f"| {row['label']} | {row['runs']} | {pairs:.0f} | " + " | ".join(cells)
                         + f" | {_delta(row['delta_miou_points'], table.get('finished', True), row['method'])} |")
        lines.append("")
    lines.append("flags: the detector's own picks during pretraining (on augmented views, with the encoder of that "
                 "step); the selectors pick on whole tiles (colour statistics; the run's final encoder; the labels). "
                 "An oracle run's flags read labels by construction. The sd is over pretraining seeds only: with "
                 "few flags per run, each run's own share is far less certain (10 pairs: a 95 % interval "
                 "about 50 points wide), which a small sd does not show.")
    return "\n".join(lines)


__all__ = ["comparison_flags", "to_markdown", "SELECTORS"]
