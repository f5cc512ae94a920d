"""Freed host memory kept (``core/host_memory.py``) against the system malloc, on the trainer and the bare loop.

    python bench/host_memory.py [--pairs 3] [--steps 16] [key=value ...]

Why a bench of its own: malloc's settings are the process's, so the two ways cannot alternate inside one process as
``bench/train.py``'s loops do. This runs ``bench/train.py`` in child processes, kept and returned alternately
(kept, returned, kept, ...), ``--pairs`` times, in one run, and reads each kept run against the returned run
beside it: the paired ratios of the trainer's and the bare loop's images/s, their median and range, and the page
faults of a trainer step. The machine's speed drifts between runs (the paired ratios show how much); the load
average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(kept: bool, steps: int, overrides: list[str], out: Path) -> dict:
    """``bench/train.py`` in a child process, its figures read back from its JSON."""
    cmd = [sys.executable, str(ROOT / "bench/train.py"), "--steps", str(steps), "--rounds", "2", "--json", str(out),
           *([] if kept else ["--system-malloc"]), *overrides]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench/train.py failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=3, help="kept/returned pairs of runs")
    p.add_argument("--steps", type=int, default=16, help="each run's timed trainer steps (bench/train.py --steps)")
    p.add_argument("overrides", nargs="*", help="key=value settings for bench/train.py (its demo preset)")
    args = p.parse_args()
    if args.pairs < 1 or args.steps < 2:
        raise SystemExit("--pairs: 1 or more; --steps: 2 or more")
    load_before = os.getloadavg()[0]
    runs: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.pairs):
            for kept in (True, False):
                fig = one_run(kept, args.steps, args.overrides, Path(tmp) / f"{k}-{kept}.json")
                if fig["freed_host_memory_kept"] != kept:
                    raise SystemExit("freed host memory cannot be kept here (not glibc, or LD_PRELOAD set): "
                                     "nothing to compare")
                runs[kept].append(fig)
                print(f"pair {k + 1}, freed memory {'kept    ' if kept else 'returned'}: trainer "
                      f"{fig['trainer_views_per_s'] / 2:6.1f} images/s, bare {fig['bare_views_per_s'] / 2:6.1f}, "
                      f"ratio {fig['ratio']:.3f}, {fig['page_faults_per_trainer_step'] or 0:,.0f} page faults a step",
                      flush=True)
    load_after = os.getloadavg()[0]
    for what, key in (("trainer", "trainer_views_per_s"), ("bare loop", "bare_views_per_s")):
        paired = [a[key] / b[key] for a, b in zip(runs[True], runs[False])]
        print(f"{what}: kept / returned = median {statistics.median(paired):.3f}, range {min(paired):.3f}-"
              f"{max(paired):.3f} over {len(paired)} pairs")
    ratios = {kept: statistics.median(f["ratio"] for f in runs[kept]) for kept in runs}
    print(f"trainer / bare (median): {ratios[True]:.3f} kept, {ratios[False]:.3f} returned; load average "
          f"{load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
