"""The GPU check's tables, from the JSON each stage of ``bench/gpu_check.sh`` wrote (issue 28, item 7).

    python bench/gpu_report.py OUT_DIR [--into docs/gpu_check.md]

Prints Markdown; ``--into`` replaces the generated section of that file (between its ``gpu_check:begin`` and
``gpu_check:end`` comments, added at its end the first time), so the document's prose stays the writer's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

BEGIN, END = "<!-- gpu_check:begin (bench/gpu_report.py writes this section) -->", "<!-- gpu_check:end -->"
TARGETS = {"ratio": 0.95, "bare_views_per_s": 7000.0, "loss": 1.3}


def _read(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _last_checkpoint(tr: dict) -> str:
    """The run's last checkpoint, timed apart by bench/train.py (older figures lack it)."""
    if "last_checkpoint_s" not in tr:
        return ""
    return (f"; the run's last checkpoint {tr['last_checkpoint_s']:.2f} s more "
            f"({tr['ratio_with_last_checkpoint']:.2f}x over {tr.get('steps', '?')} steps with it)")


def report(folder: Path) -> str:
    lines = ["## Measured by `bench/gpu_check.sh`", ""]
    env = _read(folder, "environment")
    if env:
        lines += [f"{env.get('gpu', '?')}; torch {env.get('torch', '?')}; load before: {env.get('load', '?')}; "
                  f"{env.get('date', '')}", ""]
    lines += ["| check | result | target |", "|---|---|---|"]
    tests = _read(folder, "tests")
    if tests:
        lines.append(f"| CUDA tests ({tests.get('what', '')}) | {tests.get('summary', '?')} | all pass: "
                     f"{_met(tests.get('rc') == 0)} |")
    sync = _read(folder, "sync_check")
    if sync:
        ok = sync.get("result") == "no synchronisation"
        lines.append(f"| host waits in non-logged steps (`sync_check`, {sync.get('steps')} steps) | "
                     f"{sync.get('result')} {sync.get('detail', '')} | none: {_met(ok)} |")
    for tag in ("eager", "compile"):
        tr = _read(folder, f"train_{tag}")
        if tr:
            lines.append(f"| trainer / bare, ResNet-50 224 px bf16 batch {tr['batch']} ({tag}) | bare "
                         f"{tr['bare_views_per_s']:,.0f} views/s, trainer {tr['trainer_views_per_s']:,.0f}: "
                         f"{tr['ratio']:.2f}x{_last_checkpoint(tr)} | >= 0.95x: {_met(tr['ratio'] >= TARGETS['ratio'])}; bare >= 7,000 "
                         f"views/s: {_met(tr['bare_views_per_s'] >= TARGETS['bare_views_per_s'])} |")
    loss = _read(folder, "loss")
    if loss:
        for row in loss["rows"]:
            if row["loss"].startswith("false"):
                lines.append(f"| `{row['loss']}` / NT-Xent, {loss['dtype']}, M = {row['m']} | {row['ms']:.2f} ms: "
                             f"{row['x_ntxent']:.2f}x | <= 1.3x: {_met(row['x_ntxent'] <= TARGETS['loss'])} |")
    mem = _read(folder, "max_batch")
    if mem and "largest_batch" in mem:
        lines.append(f"| peak memory, {mem['encoder']} {mem['size']} px bf16, batch {mem['batch']} | "
                     f"{mem['peak_gib']:.1f} GiB of {mem['device_gib']:.0f} | (measured) |")
        lines.append(f"| largest batch that fits | {mem['largest_batch']}"
                     f"{' (the search limit)' if mem['capped_at_limit'] else ''} images | (measured) |")
    prof = _read(folder, "profile")
    if prof:
        lines += ["", f"Top kernels of a step ({prof['ms_per_step']:.1f} ms of device time per step):", "",
                  "| ms / step | share | calls / step | operator |", "|---|---|---|---|"]
        lines += [f"| {r['ms_per_step']:.2f} | {100 * r['share']:.1f} % | {r['calls_per_step']:.1f} | "
                  f"`{r['op'][:80]}` |" for r in prof["top"]]
    return "\n".join(lines) + "\n"


def into(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else ""
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    doc.write_text(text)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder")
    p.add_argument("--into")
    args = p.parse_args(argv)
    section = report(Path(args.folder))
    print(section)
    if args.into:
        into(Path(args.into), section)
    return section


if __name__ == "__main__":
    main()
