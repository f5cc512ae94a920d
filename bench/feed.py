"""The pretraining data path alone: how many views per second can it feed a model, and which stage limits it?

    python bench/feed.py [--config configs/demo_cpu.yaml] [--steps 30] [--target 3000] [key=value ...]

Why: a GPU that trains at 3,000 views/s is wasted when tiles, batching, augmentation or the copy to the device
deliver fewer. Each stage is timed on its own over the same steps' batches (``BatchOrder``, as training draws them),
side by side in one run:
  1. fetch: the tiles of a batch from the data set's cache (``get_images``), uint8;
  2. copy: those tiles to the training device (pinned memory on CUDA; nothing to do on the CPU);
  3. augment: two random views per tile (``TwoViewAugment``, batched on the device);
  4. feed: the trainer's own ``views(step)``: all of the above with the next batch fetched in a background thread.
No model runs. The slowest stage is what limits the feed; the line says whether it reaches ``--target`` views/s.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from core.config import config_to_yaml, load_config
from core.ssl.pretrain import Trainer
from core.store.runs import create_run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(trainer: Trainer, steps: int, work: Callable[[int], object]) -> float:
    """Views per second of ``work(step)`` over ``steps`` steps (two warm-up steps first)."""
    for s in range(2):
        work(s)
    _sync(trainer.device)
    t = time.perf_counter()
    for s in range(2, 2 + steps):
        work(s)
    _sync(trainer.device)
    return 2 * steps * trainer.cfg.train.batch_size / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "configs/demo_cpu.yaml"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--target", type=float, default=3000.0, help="views/s a GPU could train at")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    cfg = load_config(args.config, ["train.max_steps=100000", *args.overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, create_run("bench", config_to_yaml(cfg), Path(tmp)), progress=False)
        dev = trainer.device
        print(f"device={dev} data={cfg.data.name} tiles={len(trainer.dataset)} views={cfg.data.image_size}px "
              f"batch={cfg.train.batch_size} threads={torch.get_num_threads()} steps={args.steps}")
        fixed = trainer.dataset.get_images(trainer.batch_indices(0))
        pinned = fixed.pin_memory() if dev.type == "cuda" else fixed
        on_device = fixed.to(dev)
        ids = torch.as_tensor(trainer.batch_indices(0), dtype=torch.long)

        def augment(s: int) -> object:
            return trainer.augment(on_device, ids, torch.Generator().manual_seed(s))

        rates = {
            "fetch": timed(trainer, args.steps, lambda s: trainer.dataset.get_images(trainer.batch_indices(s))),
            "copy": timed(trainer, args.steps, lambda s: pinned.to(dev, non_blocking=True)),
            "augment": timed(trainer, args.steps, augment),
            "feed": timed(trainer, args.steps, trainer.views),
        }
    for name, rate in rates.items():
        print(f"{name:8s} {rate:10.0f} views/s")
    stages = {k: v for k, v in rates.items() if k != "feed"}
    limit = min(stages, key=stages.get)
    verdict = "reaches" if rates["feed"] >= args.target else "does NOT reach"
    print(f"the feed {verdict} {args.target:.0f} views/s ({rates['feed']:.0f}); the slowest stage is {limit} "
          f"({stages[limit]:.0f} views/s)" + (" (CPU augmentation: on a GPU it runs on the device)"
                                              if limit == "augment" and dev.type == "cpu" else ""))


if __name__ == "__main__":
    main()
