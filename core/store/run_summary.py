"""A run as one row of the Runs and Overview tables: what it is, where it stands, its best number. Apart from
``runs`` (the folder itself) because it is presentation: which figure a table shows for which kind of run."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config.strategy import method_and_strategy
from .file_versions import read_once
from .run_state import LIVE_STATES
from .runs import Run, tail_text


# after a test score whose scenes an earlier stage read (the encoder's pretraining): every table that shows it says so
NOT_UNSEEN = "(not an unseen score: an earlier stage read these test scenes or their neighbours)"
# the words of the notes in test_metrics.json's ``not_unseen`` that concern its test scenes (``lineage.pretraining_note``,
# ``labeled.neighbours_note``); a note about validation scenes only leaves the test score an unseen one
TEST_SEEN_WORDS = ("of its test scenes", "the test images share")


def test_not_unseen(test: dict[str, Any] | None) -> bool:
    """Whether a run's test record says an earlier stage read its test scenes (or their neighbours)."""
    text = str((test or {}).get("not_unseen") or "")
    return any(words in text for words in TEST_SEEN_WORDS)


def summary_row(run: Run) -> dict[str, Any]:
    """One row for a table of runs: what it is, where it stands, its best number."""
    s, cfg, kind = run.status(), run.config(), run.kind()
    if not cfg:
        method, encoder, data = "? (config.yaml unreadable)", None, None
    elif kind == "pretrain":
        loss = cfg.get("loss", {}) if isinstance(cfg.get("loss"), dict) else {}
        method = method_and_strategy(str(cfg.get('method', '?')), loss)
        encoder = (cfg.get("model") or {}).get("encoder")
        data = (cfg.get("data") or {}).get("name")
    elif kind == "finetune":
        model = cfg.get("model") or {}
        method = f"{model.get('arch', '?')} ({(cfg.get('train') or {}).get('protocol', '?')})"
        encoder, data = model.get("encoder"), (cfg.get("data") or {}).get("name")
    elif kind == "probe":
        model = cfg.get("model") or {}
        method, encoder = "linear probe", model.get("encoder")
        data = (cfg.get("data") or {}).get("name")
    else:
        method, encoder, data = _methods_compared(cfg), None, None
    # where its encoder came from, apart from the method (a filter by method keeps one option per recipe)
    init = _init_words(cfg.get("model") or {}) if kind in ("finetune", "probe") and isinstance(cfg, dict) else ""
    step, total = _count(s.get("step")) or 0, _count(s.get("total_steps"))
    best, metric = None, ("last loss" if kind == "pretrain" else "best val mIoU" if run.validates()
                          else "test mIoU (at the end)")
    test = run.read_json("test_metrics.json") if kind in ("finetune", "probe") else None
    if kind == "compare":  # its scores are a table of methods: its first difference, or how far it is
        data, metric, best = _comparison_figure(run, step, total, s)
    elif kind == "pretrain":
        last = last_record(run.path / "metrics.jsonl")
        best = None if last is None else last.get("loss")
    elif test is not None and isinstance(test.get("miou"), (int, float)):  # as the Fine-tune page gives it
        best, metric = test["miou"], "test mIoU" + (f" {NOT_UNSEEN}" if test_not_unseen(test) else "")
    elif s.get("best_miou") is not None:
        best = s.get("best_miou")
    return {"run": run.id, "kind": kind, "state": run.state(), "method": method, "init": init, "encoder": encoder,
            "data": data, "step": step, "total_steps": total,
            "progress": min(1.0, step / total) if total else (1.0 if s.get("state") == "completed" else 0.0),
            "metric": metric, "value": best,
            "started": s.get("started") or s.get("created"), "error": s.get("error")}



def _init_words(model: dict[str, Any]) -> str:
    """Where a fine-tuning or probe run's encoder came from, as `false-wb runs` writes it after the method: ", random
    encoder" or " of <run>" (a walkthrough could not tell a random-init fine-tune from a pretrained one there)."""
    init = model.get("init")
    if not isinstance(init, str) or not init:
        return ""
    if init == "random":
        return ", random encoder"
    p = Path(init)
    name = p.parent.parent.name if p.parts[-2:] == ("checkpoints", "encoder.safetensors") else p.name
    return f" of {name}"


def _methods_compared(cfg: dict[str, Any], most: int = 3) -> str:
    """"comparison of simclr, simclr_false_pa": the config's method names, as ``--config``'s ``methods`` gives them
    (a review read "comparison" on every comparison's row and could not tell them apart)."""
    methods = [str(m) for m in cfg.get("methods") or []] if isinstance(cfg.get("methods"), list) else []
    if not methods:
        return "comparison"
    more = f" +{len(methods) - most} more" if len(methods) > most else ""
    return f"comparison of {', '.join(methods[:most])}{more}"


def _comparison_figure(run: Run, step: int, total: int | None, status: dict[str, Any]) -> tuple[str | None, str, Any]:
    """(data set, metric, value) of a comparison's row: once ``comparison.json`` is written, its first paired
    difference in mIoU points with its verdict ("+1.2 points (within noise)"); before, the units done. Why: the row
    showed "units done (of 4): 4" beside a progress column that said the same, and no result. A comparison resumed
    since its result was written (to add seeds) is said to show the result of before the resume. The file (every
    unit's row, tens of KB) is read once per version: every table of runs asks on every view."""
    path = run.path / "comparison.json"
    try:
        data, metric, value = read_once(path, _result_figure, "run-summary-figure")
        written = path.stat().st_mtime
    except (OSError, ValueError):  # not written yet, or torn
        data, metric, value, written = None, None, None, None
    if metric is None:
        return data, f"units done (of {total})" if total else "units done", step
    resumed = status.get("resumed")
    if status.get("state") in LIVE_STATES and isinstance(resumed, (int, float)) and written is not None \
            and written < resumed:
        metric += " (before this resume)"
    return data, metric, value


def _result_figure(path: Path) -> tuple[str | None, str | None, Any]:
    """(data set, metric, value) of a ``comparison.json``; metric None when it holds no result to show."""
    result = json.loads(path.read_text(encoding="utf-8"))
    result = result if isinstance(result, dict) else {}
    splits = result.get("splits") if isinstance(result.get("splits"), dict) else {}
    data = splits.get("data") if isinstance(splits.get("data"), str) else None
    diffs = [d for d in result.get("differences") or [] if isinstance(d, dict)]
    points = (diffs[0].get("miou_points") or {}) if diffs else {}
    if not isinstance(points, dict) or not isinstance(points.get("mean"), (int, float)):
        scored = [m for m in result.get("methods") or [] if isinstance(m, dict)
                  and isinstance(m.get("miou_mean"), (int, float))]
        if scored and not diffs:  # no variant with its base (e.g. random beside simclr): the means, no winner named
            top = sorted(scored, key=lambda m: -m["miou_mean"])[:3]  # "best" read as a verdict with no interval
            return data, "mean mIoU (no paired difference)", ", ".join(
                f"{m.get('label') or m.get('method')} {100 * m['miou_mean']:.1f} %" for m in top)
        return data, None, None
    labels = {m.get("method"): m.get("label") for m in result.get("methods") or [] if isinstance(m, dict)}
    named = [labels.get(diffs[0].get(k)) or diffs[0].get(k) for k in ("method", "base")]
    more = f"; {len(diffs) - 1} more in table.md" if len(diffs) > 1 else ""
    return (data, f"mIoU {named[0]} − {named[1]}",
            f"{points['mean']:+.1f} points ({diffs[0].get('verdict') or points.get('verdict') or 'no verdict'}){more}")


def _count(value: Any) -> int | None:
    """A step count as a table can hold it: a run made before the configs bounded its length may say 10^20 steps, which
    no int64 column holds (it took the whole Runs table down); such a count reads as unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63 else None


def last_record(path: Path) -> dict[str, Any] | None:
    """The last whole JSON line with a loss, reading only the file's tail (a long run's records are large)."""
    if not path.exists():
        return None
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 65536))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "loss" in rec:
            return rec
    return None


WARNING_MARK = "warning: "


def run_warnings(run: Run, limit: int = 8) -> list[str]:
    """The distinct warnings a run gave (its ``log.txt`` and, for a launched run, the terminal's ``console.txt``),
    oldest first. Why: a Pretrain-page run on Dubai split by image warned that its test images shared tiles with its
    training ones, on the terminal only; the page showed nothing (a review)."""
    seen: dict[str, None] = {}
    for text in (run.log_text(), tail_text(run.path / "console.txt", 200_000)):
        for line in text.splitlines():
            at = line.find(WARNING_MARK)
            if at >= 0 and (said := line[at + len(WARNING_MARK):].strip()):
                seen.setdefault(said, None)
    return list(seen)[:limit]

