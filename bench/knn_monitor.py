"""Cost of the online kNN monitor of pretraining against the training steps it interrupts, in one run.

    python -m bench.knn_monitor [--config configs/demo_cpu.yaml] [--steps 10] [key=value ...]

Times ``--steps`` trainer steps (all their bookkeeping, after 3 warm-up steps), then three measurements of the
monitor (features of its bank and query tiles and the vote) on the same encoder, in the same process. The monitor's
share of the run time at ``train.knn_every = E`` is ``t_monitor / (t_monitor + E * t_step)``. Target (issue 12): at
most 10 % where it is on by default; the smallest E that meets it is printed too.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.train import sync
from core.config import config_to_yaml, load_config
from core.ssl.knn_monitor import KnnMonitor
from core.ssl.pretrain import Trainer
from core.store.runs import create_run

TARGET = 0.10


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "configs/demo_cpu.yaml"))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    cfg = load_config(args.config, ["train.max_steps=100000", *args.overrides])
    every = cfg.train.knn_every
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg.model_copy(update={"train": cfg.train.model_copy(update={"knn_every": 0})}),
                          create_run("bench", config_to_yaml(cfg), Path(tmp)), progress=False)
        monitor = KnnMonitor(trainer.dataset, max(every, 1), cfg.data.image_size, cfg.seed, trainer.device)
        trainer.total_steps = 3
        trainer.fit()  # warm-up
        trainer.total_steps = 3 + args.steps
        sync(trainer.device)
        t = time.perf_counter()
        trainer.fit()
        sync(trainer.device)
        step_s = (time.perf_counter() - t) / args.steps
        monitor.measure(trainer.model.encoder)  # warm-up
        knn_s = statistics.median(monitor.measure(trainer.model.encoder)["knn_s"] for _ in range(3))
    print(f"device={trainer.device} encoder={cfg.model.encoder} views={cfg.data.image_size}px "
          f"batch={cfg.train.batch_size} threads={torch.get_num_threads()} load average before {load:.1f}")
    print(monitor.describe())
    print(f"trainer step: {step_s:.3f} s; monitor: {knn_s:.3f} s = {knn_s / step_s:.2f} steps")
    smallest = math.ceil(knn_s * (1 - TARGET) / (TARGET * step_s))
    if every:
        share = knn_s / (knn_s + every * step_s)
        print(f"share of run time at knn_every={every}: {share:.1%} (target <= {TARGET:.0%}: "
              f"{'MET' if share <= TARGET else 'NOT MET'})")
    else:
        print("the preset has the monitor off (knn_every=0)")
    print(f"smallest knn_every with a share <= {TARGET:.0%}: {smallest}")


if __name__ == "__main__":
    main()
