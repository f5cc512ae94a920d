"""Segmentation fine-tuning and evaluation of a (pretrained) encoder.

    python -m core.finetune --config configs/finetune_demo_cpu.yaml [key=value ...] [--resume RUN_DIR]

Two protocols. ``frozen`` is the paper's: the encoder is not trained (BatchNorm in eval mode too), only the
DeepLabV3+ decoder (and the auxiliary FCN head) learn, so the score measures the pretrained features; SGD with
polynomial decay. ``full`` is what practitioners do: everything trains with AdamW, the encoder at a lower rate.
The run folder holds last and best checkpoints (segmentation cards), metrics per evaluation, the confusion matrix
of the best evaluation and the test scores of the best model. With ``train.average_from`` the run's model
(``best.safetensors``) is instead the mean of its last steps' weights (``core.seg.weight_average``), and
``average-<step>.safetensors`` keeps the running mean for a resume.

Under torchrun (``--nproc-per-node N``, one process per GPU) each rank trains on its share of every batch (DDP,
SyncBatchNorm on GPUs); the first rank alone validates, writes the folder and tests, while the others wait.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..store.checkpoint import load_checkpoint, read_metadata, rng_state, save_checkpoint, set_rng_state
from ..config import ConfigError, FinetuneConfig, total_steps
from ..data.labeled import neighbours_note
from ..data.mask_read import label_masks_of
from .fingerprint import domain_section, rewrite_card
from ..data.seg_augment import SegAugment, jitter_strengths
from ..device import pick_device, pick_precision
from ..phases import phase_bar, stop_between_chunks
from ..distributed import DistEnv, agree, barrier, mean_over_ranks
from .metrics import SegScores
from ..store.lifecycle import RunLife, StopFlag, check_finite
from ..store.runs import Run, atomic_write_json
from .scene_eval import evaluate, test_scores
from .scene_role import scored_scenes_text
from .data_check import checked_splits
from ..step_memory import check_step_memory
from .encoder_init import resolve_init
from .lineage import KEY, init_pretrain_scenes, pretraining_note
from .seg_loss import SegLoss
from .weight_average import WeightAverage, bn_batch_count, training_batches
from .segmodel import build_seg_model, make_card
from ..ssl.optim import ADAMW_FOREACH
from ..imaging.bands import bands_of
from ..data.protocols import LabeledTiles

AUX_WEIGHT = 0.4


def class_weights(train: LabeledTiles, how: str) -> torch.Tensor | None:
    """Loss weights per class from the training tiles' pixel counts. Why 1/sqrt and not 1/share: inverse shares
    of a 1 % class (roads) are 50x and make training unstable; the square root still lifts rare classes a lot.
    Normalised to mean 1 over the classes present; a class absent from training keeps weight 1."""
    if how == "none":
        return None
    counts = np.asarray(train.counts, np.float64).sum(axis=0)
    share = counts / max(1.0, counts.sum())
    w = np.ones_like(share)
    present = share > 0
    if present.any():
        w[present] = 1.0 / np.sqrt(share[present])
        w[present] /= w[present].mean()
    return torch.tensor(w, dtype=torch.float32)


class FinetuneTrainer:
    def __init__(self, cfg: FinetuneConfig, run: Run | None, progress: bool = True,
                 env: DistEnv | None = None) -> None:
        self.cfg, self.run, self.env = cfg, run, env or DistEnv()
        self.progress = progress and self.env.main
        tc = cfg.train
        self.device = pick_device(tc.device, self.env.local_rank)
        self.precision = pick_precision(tc.precision, self.device)
        torch.manual_seed(cfg.seed)
        init = resolve_init(cfg.model.init)  # a typo is one line before minutes of data generation (a walkthrough)
        self.splits = checked_splits(cfg, progress=self.progress)  # what the launch form checks too
        self.validating = len(self.splits.val) > 0  # else (data.val_fraction 0) the weight average is the model
        self.classes = self.splits.classes
        self.ignore_index = self.splits.ignore_index
        self.pretrained_on = init_pretrain_scenes(init)  # None: not recorded
        self.card = make_card(arch=cfg.model.arch, encoder=cfg.model.encoder, classes=self.classes,
                              ignore_index=self.ignore_index, output_stride=cfg.model.output_stride,
                              aux_head=cfg.model.aux_head, decoder_channels=cfg.model.decoder_channels,
                              input_scale=cfg.model.input_scale, init=cfg.model.init, protocol=tc.protocol,
                              training_data=self._data_text(),
                              input_size=cfg.data.crop_size, bands=bands_of(self.splits.train),
                              band_stretch=getattr(self.splits.train, "band_stretch", None),
                              file_bands=getattr(self.splits.dataset, "file_bands", None),
                              bands_by_name=cfg.data.bands is not None,
                              **label_masks_of(self.splits.dataset),
                              **({KEY: self.pretrained_on} if self.pretrained_on is not None else {}))
        model = build_seg_model(self.card, encoder_weights=init)
        if self.env.active and self.device.type == "cuda":  # SyncBatchNorm runs on GPUs only
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)  # the bare module: checkpoints, validation, test
        if self.precision.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if tc.protocol == "frozen":
            self.model.encoder.requires_grad_(False)
        self.optimizer = self._optimizer()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.dtype == torch.float16)
        jitter = cfg.data.colour_jitter
        self.augment = SegAugment(cfg.data.crop_size, photometric=jitter > 0, **jitter_strengths(jitter),
                                  bands=bands_of(self.splits.train))
        # the net that trains: DDP over the ranks (it averages the gradients), else the model itself
        self.net: nn.Module = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.env.active else self.model
        n = len(self.splits.train)
        # one labeled tile still trains: two augmentations of it per step (BatchNorm cannot train on a batch of 1)
        self.batch = max(2, min(tc.batch_size, n))
        if self.batch < self.env.world:
            raise ConfigError(f"train.batch_size: {self.batch} tiles per step over {self.env.world} processes leaves "
                              "some with none; give at least one per process")
        check_step_memory(self.model, len(bands_of(self.splits.train)), -(-self.batch // self.env.world),
                          cfg.data.crop_size, self.device, asked=tc.batch_size if self.env.world == 1 else None,
                          processes=self.env.world)  # on the CPU a step too large takes the whole machine down
        self.steps_per_epoch = max(1, n // self.batch)
        self.total_steps = total_steps(tc.max_steps, tc.epochs, self.steps_per_epoch)
        self.step = 0
        self.best_miou = -1.0
        weight = class_weights(self.splits.train, tc.class_weights)
        self.loss_fn = SegLoss(tc.loss, self.ignore_index, None if weight is None else weight.to(self.device))
        self.averager = WeightAverage(self.model, tc.average_from, self.total_steps) \
            if tc.average_from is not None else None
        self.selection = (f"the evaluation with the best validation mIoU (every {tc.eval_every} steps and the last)"
                          if self.averager is None else "")

    def _data_text(self) -> str:
        d = self.cfg.data
        return f"{d.name}" + (f" ({d.root})" if d.root else "") + f", label fraction {d.label_fraction}"

    def _optimizer(self) -> torch.optim.Optimizer:
        tc = self.cfg.train
        enc = [p for p in self.model.encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in self.model.encoder.parameters()}
        head = [p for p in self.model.parameters() if p.requires_grad and id(p) not in enc_ids]
        if tc.protocol == "frozen":
            return torch.optim.SGD(head, lr=tc.lr, momentum=0.9, weight_decay=tc.weight_decay)
        lr = tc.lr * tc.encoder_lr_scale
        groups = [{"params": head, "lr": tc.lr, "base_lr": tc.lr}, {"params": enc, "lr": lr, "base_lr": lr}]
        return torch.optim.AdamW(groups, weight_decay=tc.weight_decay, foreach=ADAMW_FOREACH)

    def _set_lr(self, step: int) -> None:
        if self.averager is not None:
            step = self.averager.lr_step(step)  # held steady while the weights are averaged
        factor = (1 - step / self.total_steps) ** 0.9  # polynomial decay, as the paper's protocol
        for g in self.optimizer.param_groups:
            g["lr"] = g.get("base_lr", self.cfg.train.lr) * factor

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.train.protocol == "frozen":
            self.model.encoder.eval()  # BatchNorm statistics of the pretrained encoder stay as they are

    def batch_indices(self, step: int) -> list[int]:
        """The whole batch of a step: a pure function of (seed, epoch, position), the same on every rank."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.splits.train))
        if len(order) < self.batch:  # a single tile: repeated (its augmentations differ)
            order = np.resize(order, self.batch)
        return order[pos * self.batch:(pos + 1) * self.batch].tolist()

    def rank_indices(self, step: int) -> list[int]:
        """This rank's share of the step's batch (all of it in one process)."""
        return np.array_split(np.asarray(self.batch_indices(step)), self.env.world)[self.env.rank].tolist()

    def train_step(self, step: int) -> float:
        self._set_lr(step)
        idx = self.rank_indices(step)
        split = self.splits.train
        images, masks = split.get_images(idx).to(self.device), split.get_masks(idx).to(self.device)
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step + 7919 * self.env.rank)
        x, y = self.augment(images, masks, gen)
        if self.precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.precision.dtype, enabled=self.precision.autocast):
            out = self.net(x)
            if isinstance(out, tuple):
                loss = self.loss_fn(out[0], y) + AUX_WEIGHT * self.loss_fn(out[1], y)
            else:
                loss = self.loss_fn(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(mean_over_ranks(loss.detach(), self.env))

    # ------------------------------------------------------------------ checkpoints
    def _card(self, scores: SegScores | None) -> dict[str, Any]:
        card = {**self.card, "step": self.step, "created": time.time(), "config": self.cfg.model_dump(mode="json"),
                "command": " ".join([Path(sys.executable).name, "-m", "core.finetune", *sys.argv[1:]])}
        if scores is not None:
            card["metrics"] = {"split": "val", **scores.summary()}
        if self.selection:
            card["selection"] = self.selection
        return card

    def save(self, name: str, scores: SegScores | None, with_optimizer: bool) -> None:
        if self.run is None:
            return
        save_checkpoint(self.run.checkpoint_dir / f"{name}.safetensors", model=self.model, card=self._card(scores),
                        optimizer=self.optimizer if with_optimizer else None,
                        extra_state={"step": self.step, "best_miou": self.best_miou, "rng": rng_state()})

    def restore(self, path: Path) -> None:
        meta = load_checkpoint(path, model=self.model, optimizer=self.optimizer, map_location=self.device)
        self.step = int(meta["state"]["step"])
        self.best_miou = float(meta["state"].get("best_miou", -1.0))
        set_rng_state(meta["state"].get("rng"))  # dropout draws on it: without it a resume is not exact
        if self.averager is not None and self.run is not None:
            self.averager.restore(self.run.checkpoint_dir, self.step, self.run.log)

    def _save_last(self, scores: SegScores | None) -> None:
        """``last`` with the optimizer, and the weight average of the same step around it (see WeightAverage)."""
        averaging = self.averager is not None and self.averager.count > 0 and self.run is not None
        if averaging:
            self.averager.save(self.run.checkpoint_dir, self._card(None), self.step)
        self.save("last", scores, with_optimizer=True)
        if averaging:
            self.averager.prune(self.run.checkpoint_dir, self.step)

    def _evaluate(self, split) -> SegScores:
        with phase_bar(total=len(split), desc="validating", unit="tile", leave=False,
                       disable=not self.progress) as bar:
            return evaluate(self.model, split, len(self.classes), self.ignore_index, self.device,
                            autocast=(self.precision.autocast, self.precision.dtype), progress=bar.step_to)

    # ------------------------------------------------------------------ loop
    def fit(self, stop: StopFlag | None = None) -> str:
        tc = self.cfg.train
        names = [c["name"] for c in self.classes]
        main = self.env.main
        with RunLife(self.run if main else None, lambda: self.step, self.total_steps, stop=stop,
                     progress=self.progress, desc="finetune", kind="finetune", world_size=self.env.world) as life:
            life.log(f"fine-tuning {self.cfg.model.arch}/{self.cfg.model.encoder} ({tc.protocol}) from "
                     f"{self.cfg.model.init} on {self._data_text()}: {len(self.splits.train)} train, "
                     f"{len(self.splits.val)} val, {len(self.splits.test)} test tiles")
            for note in self._notes():
                life.log(f"warning: {note}")
                if main and note != neighbours_note(self.splits):  # the terminal too (the split warned that one)
                    print(f"warning: {note}", file=sys.stderr)
            if main and self.run is not None and not self.validating:
                self.run.write_status(validation=False)  # the pages then wait for the test, not a validation
            losses, t0 = [], time.perf_counter()
            self._train_mode()
            while self.step < self.total_steps and not self._stop_agreed(life):
                # one step: augmented crops, loss, backward, optimizer
                loss = self.train_step(self.step)
                check_finite(loss, self.step + 1, "try a lower train.lr")
                losses.append(loss)
                self.step += 1
                if self.averager is not None:
                    self.averager.after_step(self.model, self.step)
                # logging: the mean loss and throughput since the last record
                if self.step % tc.log_every == 0 or self.step == self.total_steps:
                    life.record("metrics.jsonl", [{
                        "step": self.step, "loss": float(np.mean(losses)), "lr": self.optimizer.param_groups[0]["lr"],
                        "images_per_s": len(losses) * self.batch / max(time.perf_counter() - t0, 1e-9),
                        "time": time.time()}])
                    life.stepped(loss=f"{np.mean(losses):.3f}")
                    losses, t0 = [], time.perf_counter()
                else:
                    life.stepped()
                # validation: best and last checkpoints
                if self.step % tc.eval_every == 0 or self.step == self.total_steps:
                    life.flush()
                    if main:
                        self._validate(names) if self.validating else self._checkpoint()
                    barrier(self.env)  # the others wait while the first validates and saves
                    self._train_mode()
                    t0 = time.perf_counter()  # throughput counts training steps only
            life.flush()
            if life.state != "stopped" and self.averager is not None:
                self._average_into_model()  # every rank: SyncBatchNorm measures across them
            if main and life.state == "stopped":  # the first rank saves and tests for all
                self._save_last(None)
            elif main and self.run is not None:  # a Stop ends the test at its next scene (a resume tests)
                with stop_between_chunks(stop.check if stop is not None else None):
                    if self.averager is not None:
                        self._validate_average(names)
                    self._test(names)
        return life.state

    def _stop_agreed(self, life: RunLife) -> bool:
        """A stop seen by any rank stops every rank before the same step."""
        if agree(life.stopping(), self.env, self.device):
            life.state = "stopped"
        return life.state == "stopped"

    def _validate(self, names: list[str]) -> None:
        scores = self._evaluate(self.splits.val)
        if self.run is None:
            return
        self.run.append_jsonl("metrics.jsonl", [{"step": self.step, "split": "val", **scores.summary(),
                                                 "iou": dict(zip(names, scores.iou)), "time": time.time()}])
        if scores.miou > self.best_miou:
            self.best_miou = scores.miou
            self.save("best", scores, with_optimizer=False)
            atomic_write_json(self.run.path / "confusion.json",
                              {"split": "val", "step": self.step, "classes": names, **scores.as_dict(names)})
        self._save_last(scores)
        self.run.write_status(step=self.step, best_miou=self.best_miou)
        self.run.log(f"step {self.step}: val mIoU {scores.miou:.4f} OA {scores.overall_accuracy:.4f}")

    def _checkpoint(self) -> None:
        """Without validation an evaluation step only writes ``last`` (and the average so far), for resuming."""
        if self.run is not None:
            self._save_last(None)
            self.run.write_status(step=self.step)

    def _average_into_model(self) -> None:
        """The model becomes the weight average, its BatchNorm statistics re-measured on training crops."""
        n_bn = bn_batch_count(self.steps_per_epoch)
        if self.run is not None and self.env.main:
            self.run.log(f"weight average of {self.averager.count} steps: re-measuring BatchNorm on {n_bn} batches")
        with phase_bar(total=n_bn, desc="BatchNorm of the weight average", unit="batch",
                       disable=not self.progress) as bar:
            def batch(i: int) -> torch.Tensor:
                bar.update()
                return self._bn_batch(i)
            average = self.averager.finish(training_batches(batch, self.steps_per_epoch))
        self.model.load_state_dict(average.state_dict())
        self.selection = self.averager.describe(n_bn)

    def _validate_average(self, names: list[str]) -> None:
        """The averaged model is validated and saved as the run's model, ``best``."""
        if not self.validating:
            self.save("best", None, with_optimizer=False)
            self.run.log("weight average saved as the run's model (no validation split to score it on)")
            return
        scores = self._evaluate(self.splits.val)
        self.run.append_jsonl("metrics.jsonl", [{"step": self.step, "split": "val", "model": "weight average",
                                                 **scores.summary(), "iou": dict(zip(names, scores.iou)),
                                                 "time": time.time()}])
        self.best_miou = scores.miou
        self.save("best", scores, with_optimizer=False)
        atomic_write_json(self.run.path / "confusion.json", {"split": "val", "step": self.step,
                                                           "model": "weight average", "classes": names,
                                                           **scores.as_dict(names)})
        self.run.write_status(step=self.step, best_miou=self.best_miou)
        self.run.log(f"weight average: val mIoU {scores.miou:.4f} OA {scores.overall_accuracy:.4f}")

    def _bn_batch(self, i: int) -> torch.Tensor:
        """Training crops of the first epoch's ``i``-th batch, augmented as in training (own seeded draws)."""
        split = self.splits.train
        idx = self.batch_indices(i)
        images, masks = split.get_images(idx).to(self.device), split.get_masks(idx).to(self.device)
        x, _ = self.augment(images, masks, torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + 104_729 + i))
        return x.contiguous(memory_format=torch.channels_last) if self.precision.channels_last else x

    def _test(self, names: list[str]) -> None:
        best = self.run.checkpoint_dir / "best.safetensors"
        if best.exists():
            load_checkpoint(best, model=self.model, map_location=self.device)
        what = "the best model" if self.averager is None else "the weight average"
        self.run.log(f"testing {what} on whole scenes")
        with phase_bar(total=None, desc=f"testing {what}", unit="scene", disable=not self.progress) as bar:
            result = test_scores(self.model, self.splits, self.device, self.cfg.train.test_tile,
                                 self.cfg.train.test_overlap, card=self.card, progress=bar.step_to)
        scores = result.scores
        atomic_write_json(self.run.path / "test_metrics.json", {
            "split": result.split, "tiles": result.tiles, **result.how.record(), "classes": names,
            **scores.as_dict(names), **({"not_unseen": note} if (note := self._not_unseen()) else {})})
        where = scored_scenes_text(result.how.scenes, getattr(self.cfg.data, f"{result.split}_scenes", None), True,
                                   self.cfg.data.split_unit)
        self.run.log(f"{what} on {result.split} ({result.how.method}, {where}): mIoU "
                     f"{scores.miou:.4f} OA {scores.overall_accuracy:.4f} kappa {scores.kappa:.4f}")
        if best.exists():
            self._add_domain(best)

    def _notes(self) -> list[str]:
        """Why this run's scores are not on unseen scenes: neighbouring tiles of a scene, an encoder that read them."""
        return [n for n in (neighbours_note(self.splits), pretraining_note(self.card, self.splits.scenes)) if n]

    def _not_unseen(self) -> str | None:  # test_metrics.json's, which the Fine-tune page shows beside the score
        return "; ".join(self._notes()) or None

    def _add_domain(self, best: Path) -> None:
        """The best model's card gets its domain section (``core.seg.fingerprint``): what ``--checkpoint auto`` and
        the out-of-domain warnings read."""
        card = read_metadata(best)["card"]
        with phase_bar(total=None, desc="domain fingerprint", unit="tile", disable=not self.progress) as bar:
            card["domain"] = domain_section(self.cfg.data, self.splits, self.model, self.classes, self.device,
                                            progress=bar.step_to)
        rewrite_card(best, card)
        self.run.log(f"domain fingerprint from {card['domain']['fingerprint']['note']} written into the best model")


if __name__ == "__main__":  # the command line lives in finetune_cli.py (``python -m core.finetune``)
    from core.host_memory import keep_freed_host_memory
    from core.seg.finetune_cli import main

    keep_freed_host_memory()  # a training process (core/host_memory.py)
    sys.exit(main())
