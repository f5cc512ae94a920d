"""Would a comparison finish sooner on 2 cores running two pretraining units at once, one thread each?

    python bench/parallel_units.py [--config configs/pretrain_dglc_cpu.yaml] [--steps 20] [key=value ...]

Why: a comparison (``core.compare``) runs its units one after the other, each with every core; small batches of
small views do not keep two threads busy. Side by side in one run, on the same config and steps:
  1. one pretraining process with ``--threads`` torch threads (the comparison today);
  2. two pretraining processes at once, one thread each (seeds 0 and 1).
Each is a real ``python -m core.pretrain`` (data, augmentation, loss, logging, checkpoint); the figure is units per
hour from the wall time of the whole process(es), so start-up counts as it does in a comparison. The line says how
loaded the machine was before it started.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _start(cfg: str, overrides: list[str], runs: Path, seed: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "FALSE_WB_RUNS": str(runs)}
    return subprocess.Popen([sys.executable, "-m", "core.ssl.pretrain", "--config", cfg, "--no-progress",
                             "--runs-root", str(runs), *overrides, f"seed={seed}", "train.ckpt_every=100000"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wall(procs: list[subprocess.Popen]) -> float:
    t0 = time.perf_counter()
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a pretraining process failed:\n{err[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/pretrain_dglc_cpu.yaml"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2, help="threads of the single process (the cores)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    overrides = [f"train.max_steps={args.steps}", *args.overrides]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        _wall([_start(args.config, overrides, runs, 9, args.threads)])  # warm the data cache and the disk
        one = _wall([_start(args.config, overrides, runs, 0, args.threads)])
        two = _wall([_start(args.config, overrides, runs, s, 1) for s in (0, 1)])
    print(f"{Path(args.config).name} {args.steps} steps, {os.cpu_count()} CPUs, load average before {load:.1f}:")
    print(f"  one process, {args.threads} threads : {one:6.1f} s per unit   ({3600 / one:5.1f} units/h)")
    print(f"  two at once, 1 thread each : {two / 2:6.1f} s per unit   ({2 * 3600 / two:5.1f} units/h)")
    print(f"  ratio (two at once / one)  : {one * 2 / two:.2f}x the units per hour")


if __name__ == "__main__":
    main()
