"""Contrastive pretraining (SimCLR or MoCo v2, with or without FALSE), from the command line.

    python -m core.pretrain --config configs/demo_cpu.yaml [key=value ...] [--resume RUN_DIR]
    torchrun --nproc-per-node 4 -m core.pretrain --config configs/false_simclr_paper.yaml

The loop below is the whole method; everything optional (AMP, channels_last, DDP, compile) is a named switch around
it. A run is resumable: the data order and augmentations of step s depend only on (seed, s) and its tiles are checked
to be the same (``run_start.check_same_data``), so a resumed run continues exactly where its last checkpoint left off.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .batch_order import BatchOrder, batch_problem
from ..cli_args import parse_run_args, pretrain_parser
from ..host_memory import keep_freed_host_memory
from ..step_memory import check_step_memory
from ..store.background import BackgroundJobs
from ..store.checkpoint import (Snapshot, encoder_snapshot, export_encoder, load_checkpoint, rng_state,
                                set_rng_state, snapshot_checkpoint, write_checkpoint)
from ..store.resume import open_for_resume, refuse_if_complete, resume_config
from ..config import (ConfigError, PretrainConfig, apply_overrides, config_to_yaml, load_config, total_steps,
                      upgrade_run_config, validate_config)
from ..data import DataError, TwoViewAugment, build_dataset
from ..imaging.bands import bands_of, is_rgb
from ..distributed import DistEnv, agree, from_first
from ..device import Precision, pick_device, pick_precision
from ..config.strategy import method_and_strategy, run_name
from .compiled import compiled, first_step_or_eager
from .knn_monitor import KnnMonitor
from .methods import StepExtra, StepLoss, method_step
from .registry import get_method
from .optim import build_optimizer, warm_up_note, warmup_cosine
from .contrastive_info import stats_to_means
from .run_start import check_same_data, log_start, name_for_overrides
from .step_feed import StepFeed
from .step_records import StepRecords
from ..store.lifecycle import RunLife, StopFlag, check_finite, prepared_run, train_from_cli
from ..store.file_versions import load_yaml
from ..store.runs import Run, atomic_write_bytes, create_run
from ..store.run_lock import lock_run
from ..data.dominant import dominant_classes


# ----------------------------------------------------------------------------------------------------------------
# The trainer

def _write_pair(last: Path, snap: Snapshot, encoder: Path, encoder_snap: Snapshot) -> None:
    """The resumable checkpoint, then the encoder export (a kill between the two: ``restore`` exports again)."""
    write_checkpoint(last, snap)
    write_checkpoint(encoder, encoder_snap)


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
        if problem := batch_problem(len(self.dataset), cfg.train.batch_size, self.env.world):
            raise ConfigError(problem)
        self.order = BatchOrder(len(self.dataset), cfg.train.batch_size, cfg.seed, self.env.world)
        self.steps_per_epoch = self.order.steps_per_epoch
        self.total_steps = total_steps(cfg.train.max_steps, cfg.train.epochs, self.steps_per_epoch)
        self.warmup_steps = cfg.train.warmup_steps if cfg.train.warmup_epochs is None \
            else round(cfg.train.warmup_epochs * self.steps_per_epoch)
        self.bands = bands_of(self.dataset)
        self.augment = TwoViewAugment(output_size=cfg.data.image_size, crop_scale=(cfg.data.crop_scale_min, 1.0),
                                      color_strength=cfg.data.color_strength, blur_prob=cfg.data.blur_prob,
                                      bands=self.bands)
        self.plugin = get_method(cfg.method)  # the method's networks, step, BatchNorm and card (core.ssl.registry)
        model = self.plugin.build_model(cfg.model, None if is_rgb(self.bands) else self.bands)
        try:  # SyncBatchNorm runs on GPUs only
            model, self.method_card = self.plugin.batchnorm(model, cfg, self.env.world, self.local_batch,
                                                            sync=self.env.active and self.device.type == "cuda")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        model = model.to(self.device)
        check_step_memory(model, len(self.bands), self.local_batch, cfg.data.image_size, self.device,  # the host's
                          size_field="data.image_size", views=1 if self.plugin.queue else 2,  # MoCo: keys no_grad
                          processes=self.env.world)
        if self.precision.channels_last and cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model  # the bare module: checkpoints, momentum update, queue
        self.lr = cfg.train.lr * cfg.train.batch_size / 256
        self.optimizer = build_optimizer(cfg.train.optimizer, model, self.lr, cfg.train.weight_decay,
                                         cfg.train.momentum)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.dtype == torch.float16)
        self.net: nn.Module = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.env.active else model
        self.method = method_step(cfg, model, self.net, self.env.rank, self.env.world, self._all_tensor)
        self._eager = (self.net, self.method)  # what a failed compilation falls back to
        self._compile_checked = not cfg.train.compile
        if cfg.train.compile:  # network and loss; the first step falls back to eager if compiling fails
            self.net = compiled(self.net, True)
            self.method = method_step(cfg, model, self.net, self.env.rank, self.env.world, self._all_tensor, True)
        self.class_of_id = self._classes_for_the_oracle()
        self.knn, self.knn_note = KnnMonitor.for_run(self.dataset, cfg.train.knn_every if self.env.main else 0,
                                                     cfg.data.image_size, cfg.seed, self.device)
        self.step = 0
        self.records = StepRecords(self.plugin.loss_rows(self.local_batch), moco=self.plugin.queue,
                                   world=self.env.world)
        self.feed = StepFeed(cfg, self.dataset, self.augment, self.order, self.env.rank, self.device, self._layout,
                             lambda: self.total_steps)  # each step's data, prepared one step ahead
        self._writes = BackgroundJobs("checkpoint-writer")  # a checkpoint is written while the next steps run

    def _classes_for_the_oracle(self) -> torch.Tensor | None:
        """The dominant class of every tile, for ``loss.detector=oracle`` only: the one loss that reads labels."""
        lc = self.cfg.loss
        if lc.name != "false" or lc.detector != "oracle":
            return None
        classes = dominant_classes(self.dataset)
        if classes is None:
            raise DataError("loss.detector=oracle: this data set has no labels to read")
        return torch.tensor(np.array(classes), dtype=torch.long, device=self.device)  # a copy: the cache is read-only

    # ------------------------------------------------------------------ data
    def batch_indices(self, step: int) -> list[int]:
        """This rank's dataset indices for a step: a pure function of (seed, epoch, position)."""
        return self.feed.batch_indices(step)

    def views(self, step: int) -> tuple[torch.Tensor, torch.Tensor, StepExtra | None]:
        batch = self.feed.batch(step)
        extra = None
        if self.class_of_id is not None or batch.support_views is not None:
            extra = StepExtra(support=batch.support_views, class_of_id=self.class_of_id)
        return batch.views, batch.view_ids, extra

    def _layout(self, views: torch.Tensor) -> torch.Tensor:
        if self.precision.channels_last and self.cfg.train.channels_last:
            return views.contiguous(memory_format=torch.channels_last)
        return views

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> StepLoss:
        """One step: two views, the method's loss (FALSE inside), backward, optimizer, after-step work. Nothing is
        read back: the loss and its flags are handed to ``self.records`` as device tensors."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * warmup_cosine(step, self.total_steps, self.warmup_steps)
        views, ids, extra = self.views(step)
        with torch.autocast(self.device.type, dtype=self.precision.dtype, enabled=self.precision.autocast):
            out = self.method.loss(views, ids, self.env.active, extra, step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        candidates = out.candidate_ids() if out.candidate_ids is not None else None  # before the queue moves on
        self.records.add(step + 1, out.loss, out.info, self._all_tensor(out.row_ids), candidates)
        self.method.after_step(self._all_tensor)
        return out

    def _all_tensor(self, x: torch.Tensor) -> torch.Tensor:
        if not self.env.active:
            return x
        parts = [torch.empty_like(x) for _ in range(self.env.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    # ------------------------------------------------------------------ checkpoints
    def card(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"kind": "pretrain", "method": cfg.method, "loss": cfg.loss.name, "encoder": cfg.model.encoder,
                "step": self.step, "total_steps": self.total_steps, "image_size": cfg.data.image_size,
                "bands": list(self.bands), "band_stretch": getattr(self.dataset, "band_stretch", None),
                "data": cfg.data.name, "config": cfg.model_dump(mode="json"), "created": time.time(),
                **self.method_card,
                "command": " ".join([Path(sys.executable).name, "-m", "core.pretrain", *sys.argv[1:]])}

    def save(self) -> None:
        if self.run is None or not self.env.main:
            return
        card = self.card()
        snap = snapshot_checkpoint(model=self.model, card=card, optimizer=self.optimizer,
                                   extra_state={"step": self.step, "scaler": self.scaler.state_dict(),
                                                "rng": rng_state()})
        folder = self.run.checkpoint_dir
        self._writes.submit(_write_pair, folder / "last.safetensors", snap, folder / "encoder.safetensors",
                            encoder_snapshot(self.model.encoder, card, of_model=snap))

    def restore(self, path: Path) -> None:
        meta = load_checkpoint(path, model=self.model, optimizer=self.optimizer, map_location=self.device)
        self.step = int(meta["state"]["step"])
        if meta["state"].get("scaler"):
            self.scaler.load_state_dict(meta["state"]["scaler"])
        set_rng_state(meta["state"].get("rng"))
        if self.run is not None and self.env.main:  # a kill between the two writes left an older encoder export
            export_encoder(self.run.checkpoint_dir / "encoder.safetensors", self.model.encoder, meta["card"])
            changed = self.knn.tiles_changed(self.run.metrics(), self.step) if self.knn is not None else None
            if changed:
                self.run.log(changed)

    def _treated(self, means: dict[str, Any]) -> dict[str, Any]:
        """The progress bar's count of treated pairs, in the treatment's word (FNCC calibrates, the others
        eliminate or attract); none for a loss that flags nothing (InfoNCE, DCL)."""
        loss = self.cfg.loss
        if loss.name != "false":
            return {}
        return {"cal" if loss.treatment == "fncc" else "treated": means["calibrated"]}

    # ------------------------------------------------------------------ loop
    def _pair_pictures(self, rows: list[dict]) -> Any:
        """A step's flagged pairs as one picture, for the trackers (pandas imported only when a tracker asks)."""
        from ..analysis.pair_grid import pair_grid
        return pair_grid(self.dataset, rows)

    def fit(self, stop: StopFlag | None = None) -> str:
        """Train to ``total_steps`` or a stop. The host reads the device only at drain points (a logged step, a
        checkpoint, a kNN step, the end, a stop), the same steps on every rank."""
        cfg, main = self.cfg, self.env.main
        life = RunLife(self.run if main else None, lambda: self.step, self.total_steps, stop=stop,
                       progress=self.progress and main,
                       desc=method_and_strategy(cfg.method, cfg.loss.model_dump(mode="json")),
                       pictures=self._pair_pictures, world_size=self.env.world)
        with life:
            try:
                self._run_steps(life)
            except BaseException:
                self._writes.wait(quiet=True)  # the checkpoint being written is still a good one
                raise
            self._writes.wait()  # a finished run's checkpoint is on disk, and one that failed to write fails it
        return life.state

    def _run_steps(self, life: RunLife) -> None:
        cfg, main = self.cfg, self.env.main
        self._log_start(life)
        if main and self.knn is not None and self.knn.starts(self.step, self.total_steps):  # untrained encoder
            life.record("metrics.jsonl", [{"step": 0, **self.knn.measure(self.model.encoder), "time": time.time()}])
        self.model.train()
        self.feed.start(self.step)
        t_last, steps_since, may_stop = time.perf_counter(), 0, True
        while self.step < self.total_steps and not (may_stop and self._stop_agreed(life)):
            if not self._compile_checked:  # the first compiled step: eager if compiling fails
                self._compile_checked = True
                first_step_or_eager(lambda: self.train_step(self.step), self.model, self.optimizer,
                                    lambda reason: self._go_eager(life, reason))
            else:
                self.train_step(self.step)
            self.step += 1
            steps_since += 1
            knn_due = cfg.train.knn_every > 0 and self.step % cfg.train.knn_every == 0  # alike on every rank
            log_due = self.step % cfg.train.log_every == 0 or self.step == self.total_steps or knn_due
            ckpt_due = self.step % cfg.train.ckpt_every == 0 or self.step == self.total_steps
            # one process asks for a stop at every step (a host flag); ranks agree at drain points only
            may_stop = not self.env.active or log_due or ckpt_due
            if not (log_due or ckpt_due or (not self.env.active and life.stopping())):
                life.stepped()
                continue
            drained = self._drain(life)
            if main and log_due:
                now = time.perf_counter()
                ips = steps_since * cfg.train.batch_size / max(now - t_last, 1e-9)
                knn = self.knn.measure(self.model.encoder) if self.knn is not None and knn_due else {}
                t_last, steps_since = time.perf_counter(), 0  # the kNN monitor's time left out
                means = stats_to_means(drained.stats[-1])
                life.record("metrics.jsonl", [{
                    "step": self.step, "epoch": self.step / self.steps_per_epoch, "loss": drained.losses[-1],
                    "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": ips, **means, **knn,
                    "time": time.time()}])
                life.stepped(loss=f"{drained.losses[-1]:.3f}", **self._treated(means), ips=f"{ips:.0f}")
            else:
                life.stepped()
            if ckpt_due:  # records first, so a kill between the two leaves no gap after a resume
                life.flush()
                self.save()
        if life.state == "stopped":
            self._drain(life)
            life.flush()
            self.save()  # the stop's own checkpoint (RunLife logs the stop)

    def _go_eager(self, life: RunLife, reason: str) -> None:
        self.net, self.method = self._eager
        life.log(f"train.compile: compilation failed ({reason}); running eager")

    def _drain(self, life: RunLife):
        """Read every buffered step: a non-finite loss fails the run naming its step (before any checkpoint holds
        its weights); the flagged pairs join ``fns.jsonl`` in step order."""
        drained = self.records.drain(self.env.active)
        bad = drained.first_non_finite()
        if bad is not None:
            check_finite(bad[1], bad[0], "try a lower train.lr or a higher loss.temperature")
        life.record("fns.jsonl", drained.records)
        return drained

    def _stop_agreed(self, life: RunLife) -> bool:
        """A stop seen by any rank (the app signals the first) stops every rank before the same step, so none is
        left waiting in a collective (under torchrun a read: asked at drain points only)."""
        flag = agree(life.stopping(), self.env, self.device)
        if flag:
            life.state = "stopped"
        return flag

    def _log_start(self, life: RunLife) -> None:
        log_start(life, self.cfg, self.dataset, f"{self.device} ({self.precision.name})",
                  f"{self.step}->{self.total_steps}", self.knn_note,
                  warm_up_note(self.warmup_steps, self.total_steps, "train.warmup_epochs"
                               if self.cfg.train.warmup_epochs is not None else "train.warmup_steps"))


# ------------------------------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_run_args(pretrain_parser(), argv)


def prepare(args: argparse.Namespace, main: bool = True) -> tuple[PretrainConfig, Run | None, Path | None]:
    """Validate everything that can be checked before compute; touch no existing run folder (``main``: this is the
    first rank, which writes the run's log)."""
    if args.resume:
        cfg, changed = resume_config(args.resume, args.overrides, validate_config, upgrade_run_config)
        run, ckpt = open_for_resume(args.resume)
        refuse_if_complete(run, cfg.train.max_steps)  # before the log says "resumed with" a change it refuses
        args.resumed_with = changed if main else []  # logged by start() once a length in epochs is checked too
        return cfg, run, ckpt
    if args.run_dir:
        run = prepared_run(args.run_dir)
        lock_run(run)
        return validate_config(apply_overrides(run.config(), args.overrides)), run, None
    if not args.config and not args.overrides:
        raise ConfigError("give --config FILE (see configs/) or --resume RUN_DIR")
    cfg = load_config(args.config, args.overrides)
    if (name := name_for_overrides(cfg, args.config, args.overrides)) is not None:
        cfg = cfg.model_copy(update={"name": name})
    return cfg, None, None


def start(args: argparse.Namespace, env: DistEnv) -> Trainer:
    """The trainer of a new run (data built before any folder is made) or of a resumed one."""
    cfg, run, ckpt = prepare(args, env.main)
    if ckpt is None:
        trainer = Trainer(cfg, None, env, progress=not args.no_progress)  # builds data: fails before a folder
        _log_resumed(args, run)
        if run is None and env.main:
            run = create_run(cfg.name or run_name(cfg.method, cfg.loss.model_dump()), config_to_yaml(cfg),
                             Path(args.runs_root) if args.runs_root else None)
            lock_run(run)
        if env.active:
            run = Run(Path(from_first(str(run.path) if run else None, env)))
        trainer.run = run
        return trainer
    trainer = Trainer(cfg, run, env, progress=not args.no_progress)
    if cfg.train.max_steps is None:  # set by epochs: their steps are known now that the data is built
        refuse_if_complete(run, trainer.total_steps, cfg.train.epochs)
    check_same_data(run.path, trainer.dataset, cfg.data.split_unit)  # before the run is touched
    _log_resumed(args, run)
    trainer.restore(ckpt)
    if env.main:
        run.truncate_after(trainer.step)
        run.log(f"resumed from step {trainer.step}")
        if cfg != validate_config(upgrade_run_config(load_yaml(run.config_text()) or {})):
            atomic_write_bytes(run.path / "config.yaml", config_to_yaml(cfg).encode())
    return trainer


def _log_resumed(args: argparse.Namespace, run: Run | None) -> None:
    for change in getattr(args, "resumed_with", []) if run is not None else []:
        run.log(f"resumed with {change}")


def main(argv: list[str] | None = None) -> int:
    return train_from_cli(argv, parse_args, start, "training")[0]


if __name__ == "__main__":  # as the app's launcher starts it: a training process (core/host_memory.py)
    keep_freed_host_memory()
    sys.exit(main())
