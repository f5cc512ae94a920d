"""Comparing runs as experiment trackers do: settings as columns, a config diff, smoothed curves, groups of runs
with their mean and spread, and the user's tags and notes on each run.

Pure functions over run configs and records (no UI), plus ``notes.json``: the one file of a run folder that the
user writes, never the trainer (so a live run can be tagged; the lock guards only the trainer's files).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..config.strategy import unread_loss_keys
from .runs import Run, atomic_write_json

NOTES = "notes.json"
MAX_TAG = 40
MAX_NOTE = 5000


# ------------------------------------------------------------------ settings
def flat_settings(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (``loss.temperature``) with scalar values; lists become their text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_settings(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(list(value))
        else:
            out[name] = value
    return out


def run_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings as dotted keys, without the loss settings its loss does not read (``unread_loss_keys``)."""
    flat = flat_settings(config)
    loss = config.get("loss") if isinstance(config.get("loss"), Mapping) else None
    if loss is None:
        return flat
    unread = {f"loss.{key}" for key in unread_loss_keys(loss)}
    return {k: v for k, v in flat.items() if k not in unread}


def differing_keys(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """The dotted keys whose value is not the same in every run (a key missing in some runs differs, except a loss
    setting: missing there means the run's loss does not read it, which the loss's name already says); the run's
    name is left out, as it always differs."""
    keys = sorted({k for s in settings for k in s})
    missing = object()

    def values(k: str) -> set[Any]:
        return {_hashable(s.get(k, missing)) for s in settings if not (k.startswith("loss.") and k not in s)}
    return [k for k in keys if k != "name" and len(values(k)) > 1]


def differing_within_kinds(settings: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, str]) -> list[str]:
    """The dotted keys that differ between runs **of the same kind** (``kinds``: run id -> kind), over all kinds.

    Why: a pretraining and a fine-tuning run share few settings, so across kinds nearly every key "differs" and
    the ones that tell two runs of a kind apart drown among them."""
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for run_id, s in settings.items():
        if s:  # an unreadable config has no settings to compare
            by_kind.setdefault(kinds.get(run_id, "?"), []).append(s)
    return sorted({k for group in by_kind.values() if len(group) > 1 for k in differing_keys(group)})


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` for every dotted key whose values differ (of the settings each run reads:
    ``run_settings``); a key one side lacks has ``None`` there (and is listed even when the other side's value is
    None, since the key itself differs)."""
    fa, fb = run_settings(a), run_settings(b)
    rows = []
    for key in sorted(set(fa) | set(fb)):
        if key not in fa or key not in fb or _hashable(fa[key]) != _hashable(fb[key]):
            rows.append((key, fa.get(key), fb.get(key)))
    return rows


# ------------------------------------------------------------------ curves
def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first values are not pulled to 0.
    ``weight`` 0 keeps the values; NaNs are passed through and do not enter the average."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out, avg, n = [], 0.0, 0
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(math.nan)
            continue
        n += 1
        avg = weight * avg + (1 - weight) * float(v)
        out.append(avg / (1 - weight ** n))
    return out


def group_curve(curves: Sequence[Sequence[tuple[int, float]]]) -> list[dict[str, float]]:
    """Mean, standard deviation (n-1), min and max over runs at every step that **all** runs of the group logged
    (a step some runs lack would mix a different set of runs into the mean)."""
    if not curves:
        return []
    by_run = [{int(s): float(v) for s, v in c if v is not None and not math.isnan(float(v))} for c in curves]
    steps = sorted(set.intersection(*(set(d) for d in by_run)))
    rows = []
    for s in steps:
        vals = [d[s] for d in by_run]
        mean = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        rows.append({"step": s, "mean": mean, "std": sd, "min": min(vals), "max": max(vals), "n": len(vals)})
    return rows


COINCIDE_TOL = 1e-3  # of the chart's value range: less than a pixel apart on a 300-pixel chart


def coinciding(curves: Mapping[str, Sequence[tuple[float, float]]], tol: float = COINCIDE_TOL) -> list[list[str]]:
    """Groups of curves (``{run id: [(step, value), ...]}``) drawn on top of each other: at every step they share
    (at least two, or all of a shorter curve's), their values are within ``tol`` of the range of all values shown
    (of the largest value when they are all equal). Only groups of two or more, in the given order.

    Why: on one chart a curve equal to another is hidden under it, so two runs look like one (a FALSE run that
    never calibrated has exactly SimCLR's loss)."""
    points = {k: {float(s): float(v) for s, v in c if v is not None and not math.isnan(float(v))}
              for k, c in curves.items()}
    values = [v for p in points.values() for v in p.values()]
    if not values:
        return []
    span = max(values) - min(values)
    atol = tol * (span if span > 0 else max(abs(v) for v in values) or 1.0)

    def same(a: dict[float, float], b: dict[float, float]) -> bool:
        common = set(a) & set(b)
        if not common or len(common) < min(2, len(a), len(b)):
            return False
        return all(abs(a[s] - b[s]) <= atol for s in common)

    groups: list[list[str]] = []
    for key, p in points.items():
        if not p:
            continue
        home = next((g for g in groups if same(points[g[0]], p)), None)
        if home is None:
            groups.append([key])
        else:
            home.append(key)
    return [g for g in groups if len(g) > 1]


def groups_of(settings: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, list[str]]:
    """Run ids by their value of the dotted setting ``key`` (``"(not set or not read)"`` where a run lacks it, e.g. a
    detector setting of an InfoNCE run)."""
    out: dict[str, list[str]] = {}
    for run_id, s in settings.items():
        out.setdefault(str(s.get(key, "(not set or not read)")), []).append(run_id)
    return out


# ------------------------------------------------------------------ tags and notes
def read_notes(run: Run) -> dict[str, Any]:
    """``{"tags": [...], "note": "..."}`` of a run (empty when it has none or the file is torn)."""
    raw = run.read_json(NOTES) or {}
    tags = [str(t) for t in raw.get("tags", []) if isinstance(t, (str, int, float))] \
        if isinstance(raw.get("tags"), list) else []
    note = raw.get("note") if isinstance(raw.get("note"), str) else ""
    return {"tags": tags, "note": note}


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Tags as people type them: trimmed, inner spaces collapsed, at most 40 characters, empty and repeated ones
    dropped (case-insensitively), order kept."""
    out: list[str] = []
    for tag in tags:
        t = " ".join(str(tag).split())[:MAX_TAG]
        if t and t.lower() not in {o.lower() for o in out}:
            out.append(t)
    return out


def write_notes(run: Run, tags: Iterable[str], note: str) -> dict[str, Any]:
    """Store a run's tags and note (atomically); returns what was stored. A note over 5,000 characters is
    refused with ValueError rather than cut."""
    if len(note) > MAX_NOTE:
        raise ValueError(f"the note has {len(note):,} characters; at most {MAX_NOTE:,} are kept")
    notes = {"tags": clean_tags(tags), "note": note.strip()}
    atomic_write_json(run.path / NOTES, notes)
    return notes


def all_tags(tag_lists: Iterable[Iterable[str]]) -> list[str]:
    """Every tag of the given runs' tag lists (``read_notes(run)["tags"]``), once each whatever its case (the first
    spelling kept), sorted case-insensitively."""
    seen: dict[str, str] = {}
    for tags in tag_lists:
        for t in tags:
            seen.setdefault(t.lower(), t)
    return sorted(seen.values(), key=str.lower)
