"""List the runs on this machine, newest first: what each is, where it stands, its figure.

    false-wb runs                       the 20 newest runs
    false-wb runs --kind finetune       fine-tuning runs only
    false-wb runs --name dubai-seg      the runs made with name=dubai-seg
    false-wb runs --json                every field, for scripts

A run is named on every command that takes one (``--resume``, ``export``, ``fn-report``, ``track``) by its folder,
its folder's name, or the ``name=`` it was made with when only one run has it. The Runs page shows the same rows.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..cli_args import runs_parser
from ..console import say
from .runs import list_runs, runs_named, runs_root

COLUMNS = ("run", "kind", "state", "method", "data", "progress", "figure")


def _made(row: dict[str, Any]) -> tuple[str, float]:
    """When a run was made: its folder's time stamp, then (two made in one second) its first status's clock."""
    started = row.get("started")
    return str(row["run"])[:15], started if isinstance(started, (int, float)) else 0.0


def _figure(row: dict[str, Any]) -> str:
    """A row's figure in the words the pages use: a pretraining's last loss, a model's mIoU in percent."""
    value, metric = row.get("value"), str(row.get("metric") or "")
    if isinstance(value, str):  # a comparison's difference, already in words
        return f"{metric}: {value}"
    if not isinstance(value, (int, float)):
        return ""
    if "mIoU" in metric:  # the figure beside its name, a caveat after it: "test mIoU 21.4 % (not an unseen ...)"
        name, _, caveat = metric.partition(" (")
        return f"{name} {100 * value:.1f} %" + (f" ({caveat}" if caveat else "")
    return f"{metric} {value:.3f}" if isinstance(value, float) else f"{metric}: {value}"


UNITS = {"probe": "epochs", "compare": "units"}  # what a run's step counts: a probe's head epochs, a comparison's units


def _steps(row: dict[str, Any]) -> str:
    total, unit = row.get("total_steps"), UNITS.get(str(row.get("kind")), "steps")
    return f"{row.get('step') or 0}/{total} {unit}" if total else f"{row.get('step') or 0} {unit}"


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[str(r["run"]), str(r["kind"]), str(r["state"]), str(r["method"] or "") + str(r.get("init") or ""),
             str(r["data"] or ""), _steps(r), _figure(r)] for r in rows]


def as_table(rows: list[dict[str, Any]]) -> str:
    """Plain columns, as wide as their widest cell: readable in any terminal and greppable."""
    cells = [list(COLUMNS), *table_rows(rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def main(argv: list[str] | None = None) -> int:
    args = runs_parser().parse_args(argv)
    root = Path(args.runs_root) if args.runs_root else runs_root()
    runs = runs_named(args.name, root) if args.name else list_runs(root)
    rows = sorted((r.summary() for r in runs), key=_made, reverse=True)  # newest first
    if args.kind:
        rows = [r for r in rows if r["kind"] == args.kind]
    if args.state:
        rows = [r for r in rows if r["state"] == args.state]
    shown = rows if args.all else rows[:args.last]
    if args.json:
        say(json.dumps(shown, indent=2, default=str))
        return 0
    if not shown:
        which = " ".join(f"--{k} {v}" for k, v in (("kind", args.kind), ("state", args.state), ("name", args.name))
                         if v)
        gone = "" if root.is_dir() else " (no such folder: check --runs-root or $FALSE_WB_RUNS)"  # a typo read as empty
        say(f"no runs{' with ' + which if which else ''} in {root}{gone}")
        return 0
    say(as_table(shown))
    if len(shown) < len(rows):
        say(f"({len(rows) - len(shown)} older not shown: --all shows them; runs live in {root})")
    return 0
