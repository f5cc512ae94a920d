"""Trainer overhead: the trainer's images/s against a bare loop on the same model and batch, in one run.

    python bench/train.py [--config configs/demo_cpu.yaml] [--steps 40] [key=value ...]

The bare loop is forward, loss, backward, optimizer step on one fixed, already augmented batch: nothing else.
The trainer does everything a real run does (data fetch, two-view augmentation, FNSD bookkeeping, metrics and
fns logging, checkpoints). The two alternate in ``--rounds`` rounds (bare, trainer, bare, ..., bare), so a machine
whose speed drifts during the run (2 to 4 % between halves on a quiet 2-core machine) moves both figures alike; each
figure is its images over its seconds, all rounds together. Each trainer round is also read against the mean of the two
bare rounds beside it: the median and range of those paired ratios show how much of a difference is the machine's
noise (on a shared 2-core virtual machine the pooled ratio of one code moved from 0.92 to 1.06 between runs). The
load average before and after is printed with them. Each round's end checkpoint (a second or more for
ResNet-50 with its optimizer state, once per run) is timed apart; the last is printed beside the ratio.
On the CPU the trainer makes the views inside its step, so there the ratio includes the augmentation; its time is
printed beside the ratio (on 2 cores the step keeps both busy: views made in the loader thread, with one or two
threads, measured no faster in sessions 43 and 44). On a GPU they are made on the loader's side stream.
Like the training commands, it keeps freed host memory for reuse (``core/host_memory.py``); ``--system-malloc``
measures without (``bench/host_memory.py`` runs both, side by side). The page faults of a trainer step are printed.
Targets: trainer >= 0.95 of the bare loop (issue 28; 0.85 since issue 2 on the CPU). ``train.compile=true``
compiles both loops' network and loss. ``--json PATH`` writes the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

import torch

from core.config import config_to_yaml, load_config
from core.host_memory import SYSTEM_MALLOC_HELP, keep_unless, kept_words
from core.ssl.methods import method_step
from core.ssl.optim import build_optimizer
from core.ssl.pretrain import Trainer
from core.store.runs import create_run


def bare_loop(trainer: Trainer, steps: int) -> float:
    """Images per second of forward + loss + backward + step on one fixed batch, through the method's own step
    (SimCLR or MoCo, any loss, detector and treatment) so the two loops compute the same thing."""
    cfg = trainer.cfg
    model, _ = trainer.plugin.batchnorm(trainer.plugin.build_model(cfg.model), cfg, 1, trainer.local_batch,
                                        sync=False)  # the method's BatchNorm (MoCo: shuffle-BN), as the trainer's
    model = model.to(trainer.device)
    if trainer.precision.channels_last and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = build_optimizer(cfg.train.optimizer, model, trainer.lr, cfg.train.weight_decay, cfg.train.momentum)
    net = torch.compile(model, dynamic=False) if cfg.train.compile else model  # train.compile: both loops compiled
    method = method_step(cfg, model, net, compile_loss=cfg.train.compile)
    views, ids, extra = trainer.views(0)
    autocast = torch.autocast(trainer.device.type, dtype=trainer.precision.dtype, enabled=trainer.precision.autocast)

    def step() -> None:
        with autocast:
            loss = method.loss(views, ids, False, extra).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_step(lambda t: t)  # one process: nothing to gather

    for _ in range(3):
        step()
    sync(trainer.device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(trainer.device)
    return steps * cfg.train.batch_size / (time.perf_counter() - t)


def split(steps: int, parts: int) -> list[int]:
    """``steps`` in ``parts`` near-equal positive parts (the first ones one longer)."""
    parts = max(1, min(parts, steps))
    return [steps // parts + (k < steps % parts) for k in range(parts)]


def paired_ratios(trainer_rates: list[float], bare_rates: list[float]) -> list[float]:
    """Each trainer round's rate over the mean of the bare rounds run just before and just after it."""
    if len(bare_rates) != len(trainer_rates) + 1:
        raise ValueError("one more bare round than trainer rounds: bare, trainer, bare, ..., bare")
    return [t / ((a + b) / 2) for t, a, b in zip(trainer_rates, bare_rates, bare_rates[1:])]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def minor_faults() -> int | None:
    """This process's minor page faults so far (None where ``resource`` is missing: Windows)."""
    return None if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def trainer_loop(trainer: Trainer, steps: int, warm_up: bool = True, in_step_views: list[float] | None = None,
                 faults: list[int] | None = None) -> tuple[float, float]:
    """Images per second of Trainer.fit over ``steps`` steps, all of its bookkeeping included, and the seconds of
    that spent on the run's last checkpoint (its snapshot and the wait for its write): a once-per-run cost that a
    40-step run cannot amortise, reported beside the ratio rather than inside it. ``in_step_views`` gets the seconds
    the step spent making its views (the CPU makes them in the step; a GPU's are made beside it and add none)."""
    if warm_up:
        trainer.total_steps = trainer.step + 3
        trainer.fit()  # warm-up, like the bare loop's
    trainer.total_steps = trainer.step + steps
    spent = [0.0]

    def timed(fn):
        def run(*args, **kwargs):
            sync(trainer.device)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(trainer.device)
                spent[0] += time.perf_counter() - t0
        return run

    def views_timed(fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if in_step_views is not None:
                    in_step_views.append(time.perf_counter() - t0)
        return run

    save, wait, augmented = trainer.save, trainer._writes.wait, trainer.feed.augmented
    trainer.save, trainer._writes.wait = timed(save), timed(wait)
    if trainer.device.type == "cpu":  # the step makes them there; a GPU's are made in the loader thread (not timed)
        trainer.feed.augmented = views_timed(augmented)
    sync(trainer.device)
    before = minor_faults()
    t = time.perf_counter()
    try:
        trainer.fit()
        sync(trainer.device)
    finally:  # the next round wraps them afresh, once
        trainer.save, trainer._writes.wait, trainer.feed.augmented = save, wait, augmented
    total = time.perf_counter() - t
    after = minor_faults()
    if faults is not None and before is not None and after is not None:
        faults.append(after - before)
    return steps * trainer.cfg.train.batch_size / (total - spent[0]), spent[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "configs/demo_cpu.yaml"))
    p.add_argument("--steps", type=int, default=40, help="the trainer's timed steps (the bare loop's alike)")
    p.add_argument("--rounds", type=int, default=8, help="alternations of the two loops")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--system-malloc", action="store_true", help=SYSTEM_MALLOC_HELP)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    kept = keep_unless(args.system_malloc)  # as `false-wb pretrain` does, for both loops
    cfg = load_config(args.config, ["train.max_steps=100000", *args.overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, create_run("bench", config_to_yaml(cfg), Path(tmp)), progress=False)
        print(f"device={trainer.device} precision={trainer.precision.name} method={cfg.method} loss={cfg.loss.name} "
              f"encoder={cfg.model.encoder} views={cfg.data.image_size}px batch={cfg.train.batch_size} "
              f"threads={torch.get_num_threads()} steps={args.steps} rounds={args.rounds} "
              f"freed host memory {kept_words(kept)}")
        if args.steps < 2:
            raise SystemExit("--steps: at least 2 (the bare loop runs before and after the trainer)")
        rounds = max(1, min(args.rounds, args.steps - 1))  # every part of either loop at least one step
        images = args.steps * cfg.train.batch_size
        bare_steps = split(args.steps, rounds + 1)
        load_before = os.getloadavg()[0]
        bare_rates, tr_rates = [bare_loop(trainer, bare_steps[0])], []
        tr_seconds, views_s, faults = 0.0, [], []
        for k, n in enumerate(split(args.steps, rounds)):
            rate, last_ckpt = trainer_loop(trainer, n, warm_up=k == 0, in_step_views=views_s, faults=faults)
            tr_rates.append(rate)
            tr_seconds += n * cfg.train.batch_size / rate
            bare_rates.append(bare_loop(trainer, bare_steps[k + 1]))
        load_after = os.getloadavg()[0]
    bare = images / sum(n * cfg.train.batch_size / r for n, r in zip(bare_steps, bare_rates))
    bare_a, bare_b = bare_rates[0], bare_rates[-1]
    tr = images / tr_seconds
    ratio = tr / bare
    with_ckpt = args.steps * cfg.train.batch_size / (args.steps * cfg.train.batch_size / tr + last_ckpt)
    print(f"bare loop: {bare:8.1f} images/s ({bare_a:.1f} first, {bare_b:.1f} last of {len(bare_rates)} rounds)")
    print(f"trainer:   {tr:8.1f} images/s over its steps; the run's last checkpoint took {last_ckpt:.2f} s more "
          f"({with_ckpt:.1f} images/s with it over {args.steps} steps: {with_ckpt / bare:.3f} of the bare loop)")
    paired = paired_ratios(tr_rates, bare_rates)
    print(f"trainer / bare = {ratio:.3f}  (target >= 0.95: {'MET' if ratio >= 0.95 else 'NOT MET'})")
    print(f"paired by round: median {statistics.median(paired):.3f}, range {min(paired):.3f}-{max(paired):.3f} over "
          f"{len(paired)} rounds; load average {load_before:.2f} before, {load_after:.2f} after, on "
          f"{os.cpu_count()} cores")
    print(f"views/s: bare {2 * bare:.1f}, trainer {2 * tr:.1f}")
    step_ms = 1000 * tr_seconds / args.steps
    faults_per_step = sum(faults) / args.steps if faults else None
    if faults_per_step is not None:
        print(f"page faults: {faults_per_step:,.0f} a trainer step (4 KiB pages mapped in again; freed host memory "
              f"{'kept' if kept else 'returned'})")
    views_ms = 1000 * sum(views_s) / args.steps
    if views_s:  # the CPU: the gap to the bare loop is mostly these
        print(f"views made in the step: {views_ms:.1f} ms of its {step_ms:.0f} ms ({views_ms / step_ms:.1%}); the bare "
              f"loop reuses one batch of views (on {os.cpu_count()} cores the step keeps every core busy, so views "
              "made beside it took as long: core/ssl/feed.py)")
    else:
        print("views made in the step: none (made beside it, on the loader's side stream)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": str(trainer.device), "compile": cfg.train.compile, "batch": cfg.train.batch_size,
            "bare_views_per_s": 2 * bare, "trainer_views_per_s": 2 * tr, "ratio": ratio,
            "last_checkpoint_s": last_ckpt, "ratio_with_last_checkpoint": with_ckpt / bare, "steps": args.steps,
            "rounds": rounds, "paired_ratios": paired, "load_average": [load_before, load_after],
            "in_step_views_ms": views_ms, "trainer_step_ms": step_ms, "freed_host_memory_kept": kept,
            "page_faults_per_trainer_step": faults_per_step},
            indent=1))


if __name__ == "__main__":
    main()
