"""Contrastive pretraining (SimCLR or MoCo v2, with or without FALSE), from the command line.

    python -m core.pretrain --config configs/demo_cpu.yaml [key=value ...] [--resume RUN_DIR]
    torchrun --nproc-per-node 4 -m core.pretrain --config configs/false_simclr_paper.yaml

The loop below is the whole method; everything optional (AMP, channels_last, DDP, compile) is a named switch
around it. A run is resumable: the data order and the augmentations of step s depend only on (seed, s), so a
resumed run continues exactly where its last checkpoint left off.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from .batch_order import BatchOrder
from .checkpoint import (CheckpointError, export_encoder, load_checkpoint, rng_state, save_checkpoint,
                         set_rng_state)
from .resume import open_for_resume
from .config import (ConfigError, PretrainConfig, apply_overrides, config_to_yaml, load_config, upgrade_run_config,
                     validate_config)
from .data import DataError, TwoViewAugment, build_dataset
from .device import Precision, pick_device, pick_precision
from .losses import ContrastiveInfo
from .methods import method_step
from .models import build_pretrain_model
from .optim import build_optimizer, warmup_cosine
from .runs import (NotARunError, Run, RunBusyError, atomic_write_bytes, atomic_write_json, create_run, lock_run,
                   open_run, unlock_run)

import yaml


LIVE_EVERY_S = 1.0  # how often logged records and the step reach the run folder between checkpoints

# ----------------------------------------------------------------------------------------------------------------
# Pieces of one training step

def fns_records(step: int, info: ContrastiveInfo, row_ids: torch.Tensor, rows_per_rank: int,
                candidate_ids: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """Flagged pairs as pairs of dataset tiles.

    Global row r of the loss is local row r % rows_per_rank of rank r // rows_per_rank, whose first half holds
    view 0 of each image and the second half view 1. For MoCo, candidates are queue slots and
    ``candidate_ids`` maps them to tiles (their view is unknown: None).
    """
    half = max(rows_per_rank // 2, 1)

    def view(row: int) -> int:
        return (row % rows_per_rank) // half

    out = []
    for rec in info.to_records():
        a, c = rec["anchor"], rec["candidate"]
        moco = candidate_ids is not None
        out.append({
            "step": step, "anchor_index": int(row_ids[a]), "anchor_view": 0 if moco else view(a),
            "candidate_index": int(candidate_ids[c] if moco else row_ids[c]),
            "candidate_view": None if moco else view(c),
            "distance": rec["distance"], "cos": rec["cos"], "cos_pos": rec["cos_pos"],
            "calibrated": rec["calibrated"], "mirrored": rec["mirrored"],
        })
    return out


def data_record(cfg: PretrainConfig, dataset: Any) -> dict[str, Any]:
    """What the run trained on, for whoever rebuilds its batches later (``data.json`` of the run folder)."""
    scenes = getattr(dataset, "split_scenes", None)
    used = getattr(dataset, "pretrain_splits", None)
    return {"name": cfg.data.name, "tiles": len(dataset), "labeled": bool(getattr(dataset, "has_labels", False)),
            "pretrain_splits": used, "split_scenes": scenes,
            "pretrain_scenes": sorted(s for k in (used or []) for s in (scenes or {}).get(k, []))}


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistEnv:
    """Join the process group when launched by torchrun; one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return DistEnv(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local)


class StopFlag:
    """Turns SIGTERM / Ctrl-C into a request to stop at the next step boundary, with a checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------------------------------------------
# The trainer

@dataclass
class Trainer:
    cfg: PretrainConfig
    run: Run | None
    env: DistEnv = field(default_factory=DistEnv)
    progress: bool = True

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.device = pick_device(cfg.train.device, self.env.local_rank)
        self.precision: Precision = pick_precision(cfg.train.precision, self.device)
        torch.manual_seed(cfg.seed)
        self.dataset = build_dataset(cfg.data, progress=self.progress and self.env.main)  # --no-progress: quiet
        if len(self.dataset) < 2:
            raise DataError(f"data: the data set has {len(self.dataset)} tile(s); pretraining needs at least 2")
        self.local_batch = cfg.train.batch_size // self.env.world
        if self.local_batch < 2:
            raise ConfigError(f"train.batch_size: {cfg.train.batch_size} images over {self.env.world} ranks "
                              "leaves fewer than 2 per rank")
        self.order = BatchOrder(len(self.dataset), cfg.train.batch_size, cfg.seed, self.env.world)
        self.steps_per_epoch = self.order.steps_per_epoch
        if self.steps_per_epoch < 1:
            raise ConfigError(f"train.batch_size: {cfg.train.batch_size} is larger than the data set "
                              f"({len(self.dataset)} tiles)")
        if cfg.train.max_steps is not None:
            self.total_steps = cfg.train.max_steps
        else:
            self.total_steps = max(1, math.ceil(cfg.train.epochs * self.steps_per_epoch))
        self.warmup_steps = cfg.train.warmup_steps if cfg.train.warmup_epochs is None \
            else round(cfg.train.warmup_epochs * self.steps_per_epoch)
        self.augment = TwoViewAugment(output_size=cfg.data.image_size, crop_scale=(cfg.data.crop_scale_min, 1.0),
                                      color_strength=cfg.data.color_strength, blur_prob=cfg.data.blur_prob)
        model = build_pretrain_model(cfg.method, cfg.model)
        if self.env.active and self.device.type == "cuda":  # SyncBatchNorm runs on GPUs only
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.device)
        if self.precision.channels_last and cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model  # the bare module: checkpoints, momentum update, queue
        self.lr = cfg.train.lr * cfg.train.batch_size / 256
        self.optimizer = build_optimizer(cfg.train.optimizer, model, self.lr, cfg.train.weight_decay,
                                         cfg.train.momentum)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.dtype == torch.float16)
        self.net: nn.Module = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.env.active else model
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        self.method = method_step(cfg, model, self.net)  # the method's own loss and after-step work
        self.step = 0
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-loader")
        self._pending: tuple[int, Future] | None = None

    # ------------------------------------------------------------------ data
    def batch_indices(self, step: int) -> list[int]:
        """This rank's dataset indices for a step: a pure function of (seed, epoch, position)."""
        return self.order.rank_batch(step, self.env.rank)

    def _load(self, idx: list[int]) -> torch.Tensor:
        images = self.dataset.get_images(idx)
        return images.pin_memory() if self.device.type == "cuda" else images

    def _images(self, step: int, idx: list[int]) -> torch.Tensor:
        """This step's tiles; the next step's are read in a background thread meanwhile."""
        if self._pending is not None and self._pending[0] == step:
            images = self._pending[1].result()
        else:
            images = self._load(idx)
        if step + 1 < self.total_steps:
            self._pending = (step + 1, self._loader.submit(self._load, self.batch_indices(step + 1)))
        else:
            self._pending = None
        return images

    def views(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.batch_indices(step)
        images = self._images(step, idx).to(self.device, non_blocking=True)
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step * 97 + self.env.rank)
        views, ids = self.augment(images, torch.as_tensor(idx, dtype=torch.long), gen)
        if self.precision.channels_last and self.cfg.train.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        return views, ids.to(self.device)

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> tuple[float, ContrastiveInfo, list[dict[str, Any]]]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * warmup_cosine(step, self.total_steps, self.warmup_steps)
        views, ids = self.views(step)
        b = ids.shape[0] // 2
        with torch.autocast(self.device.type, dtype=self.precision.dtype, enabled=self.precision.autocast):
            out = self.method.loss(views, ids, self.env.active)
        loss, info = out.loss, out.info
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        records: list[dict[str, Any]] = []
        if info.num_flagged:  # the same on every rank, so every rank joins the gather
            row_ids = self._all(out.row_ids)
            if self.env.main:
                candidates = out.candidate_ids() if out.candidate_ids is not None else None
                records = fns_records(step + 1, info, row_ids, 2 * b, candidates)
        self.method.after_step(self._all_tensor)
        loss_value = loss.detach()
        if self.env.active:  # log the loss of the whole batch, not of this rank's anchors
            dist.all_reduce(loss_value)
            loss_value /= self.env.world
        return float(loss_value), info, records

    def _all_tensor(self, x: torch.Tensor) -> torch.Tensor:
        if not self.env.active:
            return x
        parts = [torch.empty_like(x) for _ in range(self.env.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def _all(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids of the gathered batch in the loss's global row order (rank-major), on the CPU."""
        return self._all_tensor(ids).cpu()

    # ------------------------------------------------------------------ checkpoints
    def card(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"kind": "pretrain", "method": cfg.method, "loss": cfg.loss.name, "encoder": cfg.model.encoder,
                "step": self.step, "total_steps": self.total_steps, "image_size": cfg.data.image_size,
                "data": cfg.data.name, "config": cfg.model_dump(mode="json"), "created": time.time(),
                "command": " ".join([Path(sys.executable).name, "-m", "core.pretrain", *sys.argv[1:]])}

    def save(self) -> None:
        if self.run is None or not self.env.main:
            return
        card = self.card()
        save_checkpoint(self.run.checkpoint_dir / "last.safetensors", model=self.model, card=card,
                        optimizer=self.optimizer, extra_state={"step": self.step, "scaler": self.scaler.state_dict(),
                                                               "rng": rng_state()})
        export_encoder(self.run.checkpoint_dir / "encoder.safetensors", self.model.encoder, card)

    def restore(self, path: Path) -> None:
        meta = load_checkpoint(path, model=self.model, optimizer=self.optimizer, map_location=self.device)
        self.step = int(meta["state"]["step"])
        if meta["state"].get("scaler"):
            self.scaler.load_state_dict(meta["state"]["scaler"])
        set_rng_state(meta["state"].get("rng"))
        if self.run is not None and self.env.main:  # a kill between the two writes left an older encoder export
            export_encoder(self.run.checkpoint_dir / "encoder.safetensors", self.model.encoder, meta["card"])

    # ------------------------------------------------------------------ loop
    def fit(self, stop: StopFlag | None = None) -> str:
        cfg, run = self.cfg, self.run
        main = self.env.main
        if run is not None and main:
            run.write_status(state="running", pid=os.getpid(), step=self.step, total_steps=self.total_steps,
                             error=None, ended=None, world_size=self.env.world)
            atomic_write_json(run.path / "data.json", data_record(cfg, self.dataset))
            run.log(f"training {cfg.method}/{cfg.loss.name} {cfg.model.encoder} on {self.device} "
                    f"({self.precision.name}), {len(self.dataset)} tiles, batch {cfg.train.batch_size}, "
                    f"steps {self.step}->{self.total_steps}")
            scenes = getattr(self.dataset, "split_scenes", None)
            if scenes:
                used = getattr(self.dataset, "pretrain_splits", [])
                run.log("scenes: " + "; ".join(f"{k} {len(v)}{' (pretrained on)' if k in used else ''}"
                                               for k, v in scenes.items()))
            skipped = getattr(self.dataset, "skipped", [])
            for path, reason in skipped:
                run.log(f"skipped unreadable image {path}: {reason}")
            if skipped:
                run.log(f"{len(skipped)} unreadable image(s) skipped in total")
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.progress and main),
                   desc=f"{cfg.method}+{cfg.loss.name}", unit="step", dynamic_ncols=True)
        metrics: list[dict[str, Any]] = []
        fns: list[dict[str, Any]] = []
        t_last, steps_since = time.perf_counter(), 0
        t_shown = t_last
        state = "completed"
        try:
            while self.step < self.total_steps:
                if stop is not None and stop.requested:
                    state = "stopped"
                    break
                loss, info, records = self.train_step(self.step)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss} at step {self.step + 1}; "
                                             "try a lower train.lr or a higher loss.temperature")
                self.step += 1
                steps_since += 1
                fns.extend(records)
                bar.update(1)
                if main and (self.step % cfg.train.log_every == 0 or self.step == self.total_steps):
                    now = time.perf_counter()
                    ips = steps_since * cfg.train.batch_size / max(now - t_last, 1e-9)
                    t_last, steps_since = now, 0
                    metrics.append({"step": self.step, "epoch": self.step / self.steps_per_epoch, "loss": loss,
                                    "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": ips,
                                    "flagged": info.num_flagged, "calibrated": info.num_calibrated,
                                    "pos_cos": info.pos_cos_mean, "neg_cos": info.neg_cos_mean,
                                    "frac_above_threshold": info.frac_above_threshold, "time": time.time()})
                    bar.set_postfix(loss=f"{loss:.3f}", cal=info.num_calibrated, ips=f"{ips:.0f}")
                    if now - t_shown >= LIVE_EVERY_S:  # records on disk for live curves, at most once a second
                        t_shown = now
                        self._flush(metrics, fns)
                        if run is not None:
                            run.write_status(step=self.step)
                if self.step % cfg.train.ckpt_every == 0 or self.step == self.total_steps:
                    self._flush(metrics, fns)
                    self.save()
                    if run is not None and main:
                        run.write_status(step=self.step)
            self._flush(metrics, fns)
            if state == "stopped":
                self.save()
                if run is not None and main:
                    run.log(f"stopped at step {self.step}; last checkpoint kept")
        except BaseException as err:
            self._flush(metrics, fns)
            if run is not None and main:
                state = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
                run.write_status(state=state, step=self.step, ended=time.time(),
                                 error=None if state == "stopped" else f"{type(err).__name__}: {err}")
                run.log(traceback.format_exc() if state == "failed" else "interrupted")
            raise
        finally:
            bar.close()
        if run is not None and main:
            run.write_status(state=state, step=self.step, ended=time.time())
            run.log(f"{state} at step {self.step}")
        return state

    def _flush(self, metrics: list[dict[str, Any]], fns: list[dict[str, Any]]) -> None:
        if self.run is not None and self.env.main:
            self.run.append_jsonl("metrics.jsonl", metrics)
            self.run.append_jsonl("fns.jsonl", fns)
        metrics.clear()
        fns.clear()


# ----------------------------------------------------------------------------------------------------------------
# Command line

def fit_from_cli(trainer: Any, what: str) -> tuple[int, str]:
    """``trainer.fit`` with SIGTERM / Ctrl-C as a clean stop; (exit code, final state). Shared by the CLIs."""
    stop = StopFlag()
    stop.install()
    try:
        return 0, trainer.fit(stop)
    except KeyboardInterrupt:
        return 130, "stopped"
    except Exception as err:  # recorded in status.json and log.txt by fit()
        log = trainer.run.path / "log.txt" if trainer.run is not None else "the run's log.txt"
        print(f"error: {what} failed: {type(err).__name__}: {err} (see {log})", file=sys.stderr)
        return 1, "failed"
    finally:
        stop.restore()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m core.pretrain", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--run-dir", metavar="RUN_DIR",
                   help="start a new run in this empty run folder (made by the workbench's launcher)")
    p.add_argument("--runs-root", help="where run folders go (default runs/ or $FALSE_WB_RUNS)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. loss.alpha=0.9 train.max_steps=50")
    return p.parse_intermixed_args(argv)  # overrides may come before, between and after the flags


def prepare(args: argparse.Namespace) -> tuple[PretrainConfig, Run | None, Path | None]:
    """Validate everything that can be checked before compute; touch no existing run folder."""
    if args.resume:
        run, ckpt = open_for_resume(args.resume)
        raw = upgrade_run_config(run.stored_config())
        cfg = validate_config(apply_overrides(raw, args.overrides))
        return cfg, run, ckpt
    if args.run_dir:
        run = prepared_run(args.run_dir)
        lock_run(run)
        return validate_config(apply_overrides(run.config(), args.overrides)), run, None
    if not args.config and not args.overrides:
        raise ConfigError("give --config FILE (see configs/) or --resume RUN_DIR")
    cfg = load_config(args.config, args.overrides)
    return cfg, None, None


def prepared_run(path: str) -> Run:
    """A launcher-made run folder that has not trained yet (its config.yaml says what to do)."""
    run = open_run(path)
    if run.last_checkpoint() is not None:
        raise NotARunError(f"run {run.path} has already trained; continue it with --resume")
    return run


def record_early_failure(args: argparse.Namespace, err: BaseException) -> None:
    """A run folder given on the command line learns why its process stopped before training."""
    folder = getattr(args, "resume", None) or getattr(args, "run_dir", None)
    if folder and (Path(folder) / "status.json").is_file():
        run = Run(Path(folder))
        run.write_status(state="failed", error=str(err), ended=time.time())
        run.log(f"could not start: {err}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg, run, ckpt = prepare(args)
        env = init_distributed()
        if ckpt is None:
            trainer = Trainer(cfg, None, env, progress=not args.no_progress)  # builds data: fails before a folder
            if run is None and env.main:
                run = create_run(cfg.name or f"{cfg.method}-{cfg.loss.name}", config_to_yaml(cfg),
                                 Path(args.runs_root) if args.runs_root else None)
                lock_run(run)
            if env.active:
                box = [str(run.path) if run else None]
                dist.broadcast_object_list(box, src=0)
                run = Run(Path(box[0]))
            trainer.run = run
        else:
            trainer = Trainer(cfg, run, env, progress=not args.no_progress)
            trainer.restore(ckpt)
            if env.main:
                run.truncate_after(trainer.step)
                run.log(f"resumed from step {trainer.step}")
                if cfg != validate_config(upgrade_run_config(yaml.safe_load(run.config_text()) or {})):
                    atomic_write_bytes(run.path / "config.yaml", config_to_yaml(cfg).encode())
    except RunBusyError as err:  # another process trains in this folder: touch nothing of it
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ConfigError, DataError, NotARunError, CheckpointError, FileNotFoundError, ValueError) as err:
        record_early_failure(args, err)  # ValueError: e.g. model.weights that are no safetensors or fit no encoder
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    try:
        code, state = fit_from_cli(trainer, "training")
    finally:
        if env.active:
            dist.destroy_process_group()
        if run is not None:
            unlock_run(run)
    if code:
        return code
    if env.main:
        print(f"{state}: {run.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
