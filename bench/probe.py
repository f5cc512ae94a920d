"""Probing one ResNet-18 encoder on the DeepGlobe scenes, cold: features, linear head, whole-scene test.

    python bench/probe.py [--root ../shared/data/deepglobe_landcover] [--init random|RUN|CHECKPOINT] [key=value ...]

Runs ``core.seg.probe`` with configs/probe_dglc_cpu.yaml in this process, from an empty feature cache, and prints the
seconds of each part against the target of issue 8 (under 3 minutes on 2 cores for the 9 DeepGlobe scenes), beside
the machine's load. Like ``false-wb probe`` it keeps freed host memory (``--system-malloc``: without). The data set
is read, never downloaded: without it the benchmark says so and stops.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from core.config import ProbeConfig, load_config
from core.data.labeled import build_seg_splits
from core.host_memory import SYSTEM_MALLOC_HELP, keep_unless, kept_words
from core.seg.probe import _CACHE, run_probe

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 180.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(ROOT.parent / "shared/data/deepglobe_landcover"))
    p.add_argument("--init", default="random")
    p.add_argument("--system-malloc", action="store_true", help=SYSTEM_MALLOC_HELP)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    kept = keep_unless(args.system_malloc)  # as `false-wb probe` does
    if not Path(args.root).is_dir():
        print(f"no DeepGlobe data at {args.root}: pass --root (nothing is downloaded)", file=sys.stderr)
        return 2
    cfg: ProbeConfig = load_config(ROOT / "configs/probe_dglc_cpu.yaml",
                                   [f"data.root={args.root}", f"model.init={args.init}", *args.overrides], ProbeConfig)
    build_seg_splits(cfg.data, progress=False)  # the tile cache, made once per machine, is not the probe's cost
    _CACHE.clear()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = run_probe(cfg, progress=False)
    total = time.perf_counter() - t0
    s, sec = result.test.scores, result.seconds
    splits = result.splits
    print(f"encoder {cfg.model.encoder} ({cfg.model.init}), input scale {cfg.model.input_scale}; "
          f"{len(splits.train)} train / {len(splits.val)} val tiles, {len(result.test.scenes)} whole test scenes")
    print(f"features {sec['features']:.1f} s, head {sec['head']:.1f} s, validation + test {sec['evaluation']:.1f} s")
    print(f"total {total:.1f} s = {total / TARGET_S:.2f}x of the {TARGET_S:.0f} s target "
          f"({'MET' if total < TARGET_S else 'NOT MET'}); test mIoU {s.miou:.4f} OA {s.overall_accuracy:.4f}; "
          f"load average before {load:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; freed host "
          f"memory {kept_words(kept)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
