"""Where a training step's time goes: the top kernels of a few real steps under ``torch.profiler`` (issue 28).

    python bench/profile_step.py [--config configs/demo_cpu.yaml] [--steps 5] [--top 15] [--json PATH] [key=value ...]

Two warm-up steps of the trainer, then ``--steps`` profiled; prints the ``--top`` operators by their own device
time (CUDA) or CPU time (no GPU), with their share of the profiled total.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from core.config import load_config
from core.ssl.pretrain import Trainer

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/demo_cpu.yaml"))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--json")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    cfg = load_config(args.config, ["train.max_steps=100000", "train.log_every=100000", *args.overrides])
    trainer = Trainer(cfg, None, progress=False)
    trainer.model.train()
    for step in range(2):
        trainer.train_step(step)
    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for step in range(2, 2 + args.steps):
            trainer.train_step(step)
        if cuda:
            torch.cuda.synchronize()
    trainer.records.drain()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in events) or 1.0
    top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[: args.top]
    rows = [{"op": e.key, "ms_per_step": getattr(e, key) / 1e3 / args.steps, "share": getattr(e, key) / total,
             "calls_per_step": e.count / args.steps} for e in top]
    print(f"{'device' if cuda else 'CPU'} time per step {total / 1e3 / args.steps:.1f} ms over {args.steps} steps; "
          f"top {len(rows)} operators by own time:")
    for r in rows:
        print(f"  {r['ms_per_step']:8.2f} ms  {100 * r['share']:5.1f} %  {r['calls_per_step']:6.1f} calls  {r['op']}")
    out = {"device": str(trainer.device), "ms_per_step": total / 1e3 / args.steps, "top": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
