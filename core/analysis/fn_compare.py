"""Two runs' flags side by side: on the same batches where they share them, else only what still compares.

Why: a detector's precision depends on which tiles met in a batch as much as on the detector. Two runs of one data
set with the same seed, batch size, ranks and method (and MoCo queue) trained on the same tiles at every step
(:class:`~core.ssl.batch_order.BatchOrder`), so their flags, recall and reference selectors stand in one table,
scored over the steps both trained (the longer run's report of its first steps is kept beside its whole one).
The views may differ (image size, augmentation strength): the tiles of each step are the same.

Runs whose batches differ are compared only by what does not depend on them: each run's precision against its own
reference selectors (margins over its random negatives and its colour-nearest picks), and recall only where the
batches are of the same size and kind. The reference selectors always pick for a run's own anchors and number of
flags, and the encoder selector uses each run's own final encoder, so even on shared batches they are each run's
own yardstick, shown beside its flags.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..config.strategy import strategy_label
from ..ssl.registry import get_method
from ..store.runs import Run, read_json_file
from .fn_quality import EXPECTED, SELECTORS, entry_ci, entry_text
from .fn_report import (FlagReportError, Progress, cached_report, data_dump, flag_report, flagged_by,
                        no_detector_reason, report_detector)
from .fn_scoring import last_step_of, run_config
from .proportions import margin, margin_text, recall_text
from .stats import proportion_difference, share_relation, signed_points

VIEW_FIELDS = ("image_size", "crop_scale_min", "color_strength", "blur_prob")  # the views, not the tiles
SHORT = {"flags": "flags", "random": "random", "colour": "colour nearest", "encoder": "encoder nearest",
         "oracle": "oracle ceiling"}


def batch_setup(run: Run) -> dict[str, Any]:
    """The settings that decide which tiles a run's steps held (ConfigError for an unreadable run)."""
    cfg = run_config(run)
    tiles = (read_json_file(run.path / "data.json") or {}).get("tiles")
    data = {k: v for k, v in data_dump(cfg.data).items() if k not in VIEW_FIELDS}
    return {"data": data, "tiles": tiles, "seed": cfg.seed, "batch size": cfg.train.batch_size,
            "ranks": int(run.status().get("world_size") or 1), "method": cfg.method,
            "queue": cfg.model.queue_size if get_method(cfg.method).queue else None}


def batch_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What makes two runs' batches differ, in words ("seed 0 vs 1", "data.num_tiles 48 vs 30"); empty: the same."""
    def said(value: Any) -> str:  # as the Runs page's config diff says it: "none", not Python's None
        return "none" if value is None else str(value)

    out = []
    for key in sorted(set(a["data"]) | set(b["data"])):
        if a["data"].get(key) != b["data"].get(key):
            out.append(f"data.{key} {said(a['data'].get(key))} vs {said(b['data'].get(key))}")
    for key in ("tiles", "seed", "batch size", "ranks", "method", "queue"):
        if key == "tiles" and (a[key] is None or b[key] is None):
            continue  # a run that never wrote data.json: its data settings decide
        if a[key] != b[key]:
            out.append(f"{key} {said(a[key])} vs {said(b[key])}")
    return out


def told_apart(labels: tuple[str, str], losses: tuple[dict[str, Any], dict[str, Any]],
               ids: tuple[str, str]) -> tuple[str, str]:
    """Two runs' strategy names, with the loss settings that differ when the names are one ("FALSE (threshold
    0.5)" beside "FALSE (threshold 0.9)"; the review saw "A: FALSE" beside "B: FALSE"), else their run names."""
    if labels[0] != labels[1]:
        return labels
    keys = [k for k in sorted(set(losses[0]) | set(losses[1])) if losses[0].get(k) != losses[1].get(k)][:3]
    if keys:
        return tuple(f"{lab} ({', '.join(f'{k} {loss.get(k)}' for k in keys)})"  # type: ignore[return-value]
                     for lab, loss in zip(labels, losses))
    return tuple(f"{lab} ({i})" for lab, i in zip(labels, ids))  # type: ignore[return-value]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _cell(entry: dict[str, Any] | None, name: str = "flags") -> str:
    return entry_text(name, entry)


def _treated(report: dict[str, Any]) -> str:
    """The precision of the flags the treatment acted on, and which those are (none: said, not "n/a")."""
    treatment = report_detector(report)["treatment"]
    if not (report.get("calibrated") or {}).get("pairs"):
        return "none: FNCC's gate never opened" if treatment == "fncc" else f"none ({treatment})"
    return f"{_cell(report['calibrated'])} (" + ("FNCC: the flags that passed its gate" if treatment == "fncc"
                                                else f"{treatment}: every flag") + ")"


def _rel(a: dict[str, Any], b: dict[str, Any]) -> str:
    """B's flags against A's by the interval of their difference (Newcombe's; two intervals that merely overlap
    called 35 % [22, 50] against 65 % [50, 78] level, a difference of +8 to +48 points)."""
    d, low, high = proportion_difference(b["precision"], tuple(b["ci"]), a["precision"], tuple(a["ci"]))
    span = f"difference {signed_points(low)} to {signed_points(high)} points"
    if low > 0 or high < 0:
        return f"{'higher' if low > 0 else 'lower'} by {abs(d) * 100:.0f} points ({span})"
    return f"level ({span}: within noise)"


@dataclass
class FlagComparison:
    """Two pretraining runs' flag reports (``reports``: None where not scored yet), and whether they share batches."""

    runs: tuple[str, str]
    labels: tuple[str, str]  # each run's strategy, as the Runs table names it
    same_batches: bool
    differences: list[str]
    last_steps: tuple[int, int]
    up_to: tuple[int | None, int | None]  # each report's step limit (None: the whole run)
    reports: tuple[dict[str, Any] | None, dict[str, Any] | None]
    recall_comparable: bool = True  # recall is a share of the same-class pairs the batches offered: it compares
    # between batches of one size and kind only (a batch twice as large offers about 4 times the pairs)
    notes: list[str] = field(default_factory=list)

    @property
    def shared_steps(self) -> int | None:
        return min(self.last_steps) if self.same_batches else None

    @property
    def complete(self) -> bool:
        return all(r is not None for r in self.reports)

    def names(self) -> tuple[str, str]:
        """The two columns: "A: FALSE", "B: nearest + eliminate"."""
        return f"A: {self.labels[0]}", f"B: {self.labels[1]}"

    def table(self) -> pd.DataFrame:
        """One row per measure, one column per run (text cells): on shared batches every selector; otherwise each
        run's precision, its own random and colour picks and its margins over them."""
        if not self.complete:
            raise ValueError("both runs need a flag report")
        a, b = self.reports
        rows: list[tuple[str, str, str]] = []

        def add(measure: str, fa: Callable[[dict[str, Any]], str]) -> None:
            rows.append((measure, fa(a), fa(b)))

        add("detector", lambda r: report_detector(r)["flags"])
        add("precision of the flags", lambda r: _cell(r["selectors"].get("flags")))
        if self.same_batches:
            add("cross-scene precision of the flags", lambda r: _cell(r["cross_scene"].get("flags")))
        if self.recall_comparable:
            add("recall (same-class pairs offered)", lambda r: f"{recall_text(r)} ({r['recall_detail']['hits']:.0f} "
                f"of {r['recall_detail']['pairs']})" if r["recall"] is not None else "n/a")
        add("flags the treatment applied to", _treated)
        names = SELECTORS[1:] if self.same_batches else ("random", "colour")
        for name in names:
            add(f"{SHORT[name]} (for its anchors)", lambda r, n=name: _cell(r["selectors"].get(n), n))
        if not self.same_batches:
            for name in ("random", "colour"):
                add(f"margin over its {SHORT[name]}", lambda r, n=name: self._margin(r, n))
        add("base rate (random pair of the set)", lambda r: f"{r['base_rate']:.3f}" if r["base_rate"] is not None
            else "n/a")
        add("steps scored", lambda r: str(r["steps_rebuilt"]))
        return pd.DataFrame(rows, columns=["measure", *self.names()]).set_index("measure")

    @staticmethod
    def _relation(report: dict[str, Any], name: str, what: str) -> str:
        """The flags against one of the run's own selectors in the page's verdict words (``share_relation``)."""
        mine, other = report["selectors"].get("flags"), report["selectors"].get(name)
        if not mine or not other or not mine.get("pairs") or not other.get("pairs"):
            return ""
        return share_relation(mine["precision"], entry_ci("flags", mine), other["precision"], entry_ci(name, other),
                              what)

    @staticmethod
    def _margin(report: dict[str, Any], name: str) -> str:
        span = margin(report, name)
        return "n/a" if span is None else margin_text(span)

    def bars(self) -> pd.DataFrame:
        """Precision per selector and run (run, selector, precision, lo, hi, pairs, unit), for a grouped bar chart:
        every selector on shared batches, only the flags and their own random and colour picks otherwise; no bounds
        for an exact expectation (random, the oracle)."""
        names = SELECTORS if self.same_batches else ("flags", "random", "colour")
        rows = []
        for col, report in zip(self.names(), self.reports):
            if report is None:
                continue
            for name in names:
                entry = report["selectors"].get(name)
                if entry and entry.get("pairs"):
                    lo, hi = (None, None) if name in EXPECTED else entry_ci(name, entry)  # exact: no bar
                    rows.append({"run": col, "selector": SHORT[name], "precision": entry["precision"],
                                 "lo": lo, "hi": hi, "pairs": entry["pairs"], "unit": report.get("unit", "pick")})
        return pd.DataFrame(rows, columns=["run", "selector", "precision", "lo", "hi", "pairs", "unit"])

    def summary(self) -> str:
        """A few plain sentences: which run's flags are right more often, on which batches; or, when the batches
        differ, that they do and each run's margin over its own selectors."""
        if not self.complete:
            return ""
        a, b = self.reports
        who = [f"the pairs {flagged_by(report_detector(r)['name'], markdown=True)} flagged in {n[0]}"
               for r, n in zip(self.reports, self.names())]
        pa, pb = a["selectors"]["flags"], b["selectors"]["flags"]
        if self.same_batches:
            steps = self.shared_steps
            text = (f"On the same batches (steps 1–{steps}), {who[0]} share their class {_pct(pa['precision'])} of "
                    f"the time (95 % interval {_pct(pa['ci'][0])}–{_pct(pa['ci'][1])}), {who[1]} "
                    f"{_pct(pb['precision'])} ({_pct(pb['ci'][0])}–{_pct(pb['ci'][1])})")
            if pa["pairs"] and pb["pairs"]:
                text += f": B is {_rel(pa, pb)}"
            text += "."
            if a["recall"] is not None and b["recall"] is not None:
                text += (f" Recall: A {recall_text(a)}, B {recall_text(b)} of the same-class pairs the batches "
                         "offered.")
        else:
            parts = []
            for n, r in zip("AB", self.reports):
                said = [self._relation(r, name, what) for name, what in
                        (("random", "its random negatives"), ("colour", "its colour-nearest picks"))]
                parts.append(f"{n} {_pct(r['selectors']['flags']['precision'])}, " + " and ".join(filter(None, said)))
            text = (f"The two runs did not train on the same batches (the settings above differ), so their "
                    f"precisions are measured on other tiles and do not compare directly; each against its own "
                    f"reference selectors: {'; '.join(parts)}.")
        for n, r in zip("AB", self.reports):
            if report_detector(r)["uses_labels"]:
                text += (f" {n}'s detector is the oracle: it reads the labels, so its precision is 100 % by "
                         f"construction; it is the ceiling, not a method to beat.")
        return text


def compare_flags(run_a: Run, run_b: Run, compute: bool = False, use_encoder: bool = True,
                  progress: Progress | None = None) -> FlagComparison:
    """The two runs' reports, each over the steps both trained when they share batches; stored ones only unless
    ``compute`` (then FlagReportError says in one line why one cannot be scored). ConfigError for a run whose
    config cannot be read."""
    cfgs = run_config(run_a), run_config(run_b)
    for run, cfg in zip((run_a, run_b), cfgs):
        reason = no_detector_reason(run, cfg)
        if reason:
            raise FlagReportError(reason)
    setups = batch_setup(run_a), batch_setup(run_b)
    differences = batch_differences(*setups)
    same = not differences
    last = last_step_of(run_a), last_step_of(run_b)
    shared = min(last) if same else None
    up_to = (shared if shared is not None and shared < last[0] else None,
             shared if shared is not None and shared < last[1] else None)
    reports = []
    for name, run, limit in zip("AB", (run_a, run_b), up_to):
        if compute:
            told = None if progress is None else \
                (lambda stage, done, total, n=name: progress(f"run {n}: {stage}", done, total))
            reports.append(flag_report(run, use_encoder=use_encoder, progress=told, up_to=limit))
        else:
            reports.append(cached_report(run, use_encoder, up_to=limit))
    losses = (cfgs[0].loss.model_dump(mode="json"), cfgs[1].loss.model_dump(mode="json"))
    labels = told_apart((strategy_label(losses[0]), strategy_label(losses[1])), losses, (run_a.id, run_b.id))
    kind = ("batch size", "ranks", "method", "queue")
    notes = []
    if same and last[0] != last[1]:
        notes.append(f"A trained {last[0]} steps, B {last[1]}: both are scored on their first {shared} steps, the "
                     "batches they share")
    if same:
        notes.append("each run's reference selectors pick for its own anchors and number of flags (the encoder "
                     "selector with its own final encoder)")
    return FlagComparison(runs=(run_a.id, run_b.id), labels=labels, same_batches=same, differences=differences,
                          last_steps=last, up_to=up_to, reports=(reports[0], reports[1]),
                          recall_comparable=all(setups[0][k] == setups[1][k] for k in kind), notes=notes)
