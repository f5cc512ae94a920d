"""Fine-tuning overhead: the trainer's images/s against a bare forward/backward loop on the same batch, in one run.

    python bench/finetune.py [--config configs/finetune_demo_cpu.yaml] [--steps 12] [key=value ...]

The bare loop is forward, cross-entropy, backward and optimizer step of the same model on one fixed, already
augmented batch: nothing else. The trainer does what a real run does per step (fetch the tiles, batched
augmentation, the learning-rate schedule, metrics). Order: bare, trainer, bare; the bare figure is the mean of
its halves. Also printed: what one step costs, and the load of the machine while it ran (1-minute load average).
Like ``false-wb finetune``, it keeps freed host memory for reuse (``core/host_memory.py``); ``--system-malloc``
measures without. Target (issue 8): trainer >= 0.85 of the bare loop.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core.config import FinetuneConfig, config_to_yaml, load_config
from core.host_memory import SYSTEM_MALLOC_HELP, keep_unless, kept_words
from core.seg.finetune import FinetuneTrainer
from core.store.runs import create_run
from core.seg.segmodel import build_seg_model


def bare_loop(trainer: FinetuneTrainer, steps: int) -> float:
    """Images per second of forward + loss + backward + step on one fixed batch."""
    model = build_seg_model(trainer.card).to(trainer.device)
    if trainer.cfg.train.protocol == "frozen":
        model.encoder.requires_grad_(False)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=trainer.cfg.train.lr)
    split = trainer.splits.train
    idx = trainer.batch_indices(0)
    x, y = trainer.augment(split.get_images(idx).to(trainer.device), split.get_masks(idx).to(trainer.device),
                           torch.Generator().manual_seed(0))

    def step() -> None:
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        loss = F.cross_entropy(out.float(), y, ignore_index=trainer.ignore_index)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(idx) / (time.perf_counter() - t)


def trainer_loop(trainer: FinetuneTrainer, steps: int) -> float:
    """Images per second of the trainer's own steps (data, augmentation, schedule, the step itself)."""
    trainer._train_mode()
    trainer.train_step(0)  # warm-up, like the bare loop's
    t = time.perf_counter()
    for s in range(1, steps + 1):
        trainer.train_step(s)
    return steps * trainer.batch / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "configs/finetune_demo_cpu.yaml"))
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--system-malloc", action="store_true", help=SYSTEM_MALLOC_HELP)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    kept = keep_unless(args.system_malloc)  # as `false-wb finetune` does, for both loops
    cfg: FinetuneConfig = load_config(args.config, ["train.max_steps=100000", *args.overrides], FinetuneConfig)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = FinetuneTrainer(cfg, create_run("bench", config_to_yaml(cfg), Path(tmp)), progress=False)
        print(f"device={trainer.device} arch={cfg.model.arch} encoder={cfg.model.encoder} protocol="
              f"{cfg.train.protocol} crop={cfg.data.crop_size}px batch={trainer.batch} threads="
              f"{torch.get_num_threads()} steps={args.steps} load average before {load_before:.2f} freed host memory "
              f"{kept_words(kept)}")
        bare_a = bare_loop(trainer, args.steps // 2)
        tr = trainer_loop(trainer, args.steps)
        bare_b = bare_loop(trainer, args.steps - args.steps // 2)
    bare = (bare_a + bare_b) / 2
    ratio = tr / bare
    print(f"bare loop: {bare:8.2f} images/s ({bare_a:.2f} before, {bare_b:.2f} after)")
    print(f"trainer:   {tr:8.2f} images/s")
    print(f"one step of {trainer.batch} images: trainer {trainer.batch / tr:.2f} s, bare {trainer.batch / bare:.2f} s")
    print(f"trainer / bare = {ratio:.3f}  (target >= 0.85: {'MET' if ratio >= 0.85 else 'NOT MET'}); "
          f"load average after {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
