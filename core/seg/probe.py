"""A fast, honest score for a frozen encoder: a per-pixel linear probe, tested on whole held-out scenes.

    python -m core.probe --config configs/probe_dglc_cpu.yaml model.init=runs/<pretraining-run> [--out probe.json]
    python -m core.probe --run-dir RUN_DIR     # a run folder made by the workbench's launcher (core.store.launch)
    python -m core.probe --resume RUN_DIR      # a stopped probe again in its folder (it keeps no checkpoint)

Why: fine-tuning DeepLabV3+ costs seconds per step on a CPU, so comparing several pretraining methods over
several seeds that way does not fit in an hour. A linear probe measures the same thing the paper's frozen
protocol does (how good the pretrained features are for segmentation) at a fraction of the cost:

1. the encoder is frozen; its last two feature maps (strides 16 and 32, the coarser upsampled) are computed once
   per encoder and split for every training tile and kept in memory (:func:`cached_features`), optionally from
   the image resized by ``model.input_scale`` (pretraining sees resized crops: 64-px views of 256-px tiles);
2. a 1x1 convolution on those features, standardised per channel, is trained with cross-entropy against the
   labels subsampled by ``train.label_stride`` (logits upsampled bilinearly to that grid);
3. encoder and head together are a segmentation network: the test split is scored over whole scenes by the same
   sliding-window inference as ``core.seg.segment`` (:mod:`core.seg.scene_eval`).

Seeds: ``seed`` draws a random encoder (``model.init=random``), the head's start and the order of its batches.

Every probe has a run folder (new under ``runs/``, or ``--run-dir``, ``--resume``), like fine-tuning: ``status.json``
(state, epoch of the head, the phases: features, test scenes), ``metrics.jsonl`` (loss and lr per epoch) and
``test_metrics.json`` (the record below, in the shape of fine-tuning's). A Stop ends it where it is: it is minutes
long and keeps no checkpoint, so a resume runs it again from the start, with its settings (a completed one only
with another length or test window)."""
from __future__ import annotations

import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ProbeConfig
from ..console import say
from ..data import DataError
from ..data.labeled import SegSplits, neighbours_note
from .data_check import checked_splits
from ..data.seg_augment import eval_transform
from ..host_memory import keep_freed_host_memory
from ..imaging.bands import bands_of, is_rgb
from ..device import pick_device
from .metrics import SegScores, confusion_matrix, scores_from_confusion
from ..phases import phase_bar
from ..store.lifecycle import RunLife, StopFlag
from ..store.runs import Run, atomic_write_json
from .lineage import init_note
from .scene_eval import SceneEval, evaluate_scenes
from ..ssl.optim import ADAMW_FOREACH
from ..ssl.models import check_encoder_name

FEATURE_BATCH = 16
_CACHE: OrderedDict[tuple, Tensor] = OrderedDict()  # features of the latest encoders, reused across probe seeds
_CACHE_SIZE = 2


class ProbeModel(nn.Module):
    """Frozen encoder + standardisation + 1x1 convolution; logits at stride 16 (``core.seg.infer`` upsamples them)."""

    def __init__(self, encoder: nn.Module, num_classes: int, channels: int, input_scale: float = 1.0) -> None:
        super().__init__()
        self.input_scale = float(input_scale)
        self.encoder = encoder.requires_grad_(False).eval()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.head = nn.Conv2d(channels, num_classes, 1)

    def train(self, mode: bool = True) -> "ProbeModel":
        super().train(mode)
        self.encoder.eval()  # BatchNorm statistics of the pretrained encoder stay as they are
        return self

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        if self.input_scale != 1.0:  # the scale the encoder was pretrained at (its views are resized crops)
            size = [max(32, round(s * self.input_scale / 32) * 32) for s in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        feats = self.encoder(x.contiguous(memory_format=torch.channels_last))  # ~20 % faster on CPUs too
        fine, coarse = feats[-2], feats[-1]
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([fine, coarse], dim=1)

    def classify(self, features: Tensor) -> Tensor:
        z = (features.float() - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return self.head(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.features(x))


def build_probe_encoder(cfg: ProbeConfig, bands: Sequence[str] | None = None) -> tuple[nn.Module, str]:
    """The frozen encoder (random from ``seed``, or a run's / checkpoint's) and a key naming its weights."""
    from ..store.file_versions import file_sha256
    from .encoder_init import resolve_init
    from ..ssl.models import build_encoder

    path = resolve_init(cfg.model.init)
    torch.manual_seed(cfg.seed)
    rgb = bands is None or is_rgb(bands)
    encoder = build_encoder(cfg.model.encoder, path, None if rgb else bands, field="model.init")
    key = f"random-{cfg.model.encoder}-seed{cfg.seed}" if path is None else file_sha256(path)
    if not rgb:
        key += "-" + "-".join(bands)
    return encoder.eval(), key


def cached_features(model: ProbeModel, key: tuple, split: Any, device: torch.device,
                    progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Stride-16 features (N, C, h, w) float16 on the CPU of every tile of ``split``, computed once per key."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    out = []
    with torch.inference_mode():
        for start in range(0, len(split), FEATURE_BATCH):
            idx = list(range(start, min(start + FEATURE_BATCH, len(split))))
            x = eval_transform(split.get_images(idx).to(device), bands_of(split))
            out.append(model.features(x).to("cpu", torch.float16))
            if progress is not None:
                progress(idx[-1] + 1, len(split))
    feats = torch.cat(out)
    _CACHE[key] = feats
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return feats


def _subsample(masks: Tensor, stride: int) -> Tensor:
    return masks[:, stride // 2::stride, stride // 2::stride] if stride > 1 else masks


def _standardise(model: ProbeModel, feats: Tensor) -> None:
    f = feats.float().transpose(0, 1).reshape(feats.shape[1], -1)
    model.mean.copy_(f.mean(dim=1).to(model.mean.device))
    model.std.copy_(f.std(dim=1).clamp_min(1e-6).to(model.std.device))


EpochHook = Callable[[int, float, float], None]  # (epochs done, that epoch's mean loss, its last lr)


def train_head(model: ProbeModel, feats: Tensor, masks: Tensor, cfg: ProbeConfig, ignore_index: int,
               device: torch.device, progress: Callable[[int, int], None] | None = None,
               on_epoch: EpochHook | None = None) -> list[float]:
    """AdamW on the 1x1 convolution, cosine schedule; returns the mean loss of every epoch."""
    tc = cfg.train
    _standardise(model, feats)
    targets = _subsample(masks, tc.label_stride)
    gen = torch.Generator().manual_seed(cfg.seed)
    nn.init.normal_(model.head.weight, std=0.01, generator=gen)
    nn.init.zeros_(model.head.bias)
    opt = torch.optim.AdamW(model.head.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, foreach=ADAMW_FOREACH)
    n = len(feats)
    steps_per_epoch = max(1, math.ceil(n / tc.batch_size))
    total = tc.epochs * steps_per_epoch
    losses = []
    model.train()
    for epoch in range(tc.epochs):
        order = torch.randperm(n, generator=gen)
        epoch_loss = []
        lr = tc.lr
        for k in range(steps_per_epoch):
            step = epoch * steps_per_epoch + k
            lr = tc.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = lr
            idx = order[k * tc.batch_size:(k + 1) * tc.batch_size]
            y = targets[idx].to(device)
            logits = model.classify(feats[idx].to(device))
            logits = F.interpolate(logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, y, ignore_index=ignore_index)
            if not torch.isfinite(loss):  # a batch without a single labeled pixel
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss.append(float(loss.detach()))
        losses.append(float(np.mean(epoch_loss)) if epoch_loss else float("nan"))
        if progress is not None:
            progress(epoch + 1, tc.epochs)
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[-1], lr)
    model.eval()
    return losses


@torch.inference_mode()
def score_tiles(model: ProbeModel, feats: Tensor, split: Any, num_classes: int, ignore_index: int,
                device: torch.device) -> SegScores:
    """Scores over the tiles of a split from their cached features (quick; for validation only)."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for start in range(0, len(split), 64):
        idx = list(range(start, min(start + 64, len(split))))
        masks = split.get_masks(idx)
        logits = model.classify(feats[idx].to(device))
        logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
        cm += confusion_matrix(logits.argmax(1).cpu(), masks, num_classes, ignore_index)
    return scores_from_confusion(cm)


@dataclass
class ProbeResult:
    test: SceneEval
    split: str
    val: SegScores | None
    splits: SegSplits
    losses: list[float]
    seconds: dict[str, float]

    def record(self, cfg: ProbeConfig) -> dict[str, Any]:
        names = [c["name"] for c in self.splits.classes]
        scores = self.test.scores
        return {"protocol": "probe", "split": self.split, "tiles": len(getattr(self.splits, self.split)),
                **self.test.record(), "classes": names, **scores.as_dict(names),
                "val": self.val.summary() if self.val is not None else None,
                "scenes_per_split": {k: len(v) for k, v in self.splits.scenes.items()},
                "losses": [round(x, 5) for x in self.losses], "seconds": self.seconds,
                "encoder": cfg.model.encoder, "init": cfg.model.init, "seed": cfg.seed}


def run_probe(cfg: ProbeConfig, splits: SegSplits | None = None, progress: bool = True,
              on_epoch: EpochHook | None = None, encoder: tuple[nn.Module, str] | None = None) -> ProbeResult:
    """Probe one encoder: features, head, validation on tiles, test on whole scenes. Its long parts are phases
    (``core.phases``): a run folder's watcher sees them with their progress even without a console bar.
    ``encoder``: ``build_probe_encoder``'s answer where the caller has it already (the trainer reads the weights
    when it is made, to fail before any folder; they were read a second time here)."""
    t0 = time.perf_counter()
    device = pick_device(cfg.train.device)
    splits = splits if splits is not None else checked_splits(cfg, progress=progress, probe=True)
    if len(splits.train) == 0:
        raise DataError(f"data: the {cfg.data.name} set gave no training tiles")
    encoder, enc_key = encoder if encoder is not None else build_probe_encoder(cfg, bands_of(splits.train))
    channels = _channels(encoder)
    model = ProbeModel(encoder, len(splits.classes), channels, cfg.model.input_scale).to(device)
    model.encoder.to(memory_format=torch.channels_last)
    data_key = (cfg.data.model_dump_json(), enc_key)
    bar = _bar(progress)
    train_feats = cached_features(model, (*data_key, "train", tuple(splits.train.indices.tolist())), splits.train,
                                  device, bar("features (train tiles)"))
    t_feat = time.perf_counter()
    train_masks = splits.train.get_masks(np.arange(len(splits.train)))
    losses = train_head(model, train_feats, train_masks, cfg, splits.ignore_index, device,
                        bar("linear head", "epoch"), on_epoch=on_epoch)
    t_head = time.perf_counter()
    val = None
    if len(splits.val):
        val_feats = cached_features(model, (*data_key, "val", tuple(splits.val.indices.tolist())), splits.val,
                                    device, bar("features (val tiles)"))
        val = score_tiles(model, val_feats, splits.val, len(splits.classes), splits.ignore_index, device)
    which = "test" if len(splits.test) else "val"
    test = evaluate_scenes(model, getattr(splits, which), len(splits.classes), splits.ignore_index, device=device,
                           tile=cfg.train.test_tile, overlap=cfg.train.test_overlap,
                           progress=bar("test scenes", "scene"))
    t_end = time.perf_counter()
    seconds = {"features": round(t_feat - t0, 2), "head": round(t_head - t_feat, 2),
               "evaluation": round(t_end - t_head, 2), "total": round(t_end - t0, 2)}
    return ProbeResult(test, which, val, splits, losses, seconds)


def _channels(encoder: nn.Module) -> int:
    chans = list(getattr(encoder, "out_channels"))
    return int(chans[-2] + chans[-1])


def _bar(enabled: bool) -> Callable[..., Callable[[int, int], None] | None]:
    """A progress callback per phase: a console bar when ``enabled``, and in any case the phase told to the run's
    watcher when one listens (``core.phases``; a launched probe runs with ``--no-progress``)."""
    def make(desc: str, unit: str = "tile") -> Callable[[int, int], None] | None:
        holder: dict[str, Any] = {}

        def update(done: int, total: int) -> None:
            if "bar" not in holder:
                holder["bar"] = phase_bar(total=total, desc=desc, unit=unit, leave=False, disable=not enabled)
            holder["bar"].step_to(done, total)
            if done >= total:
                holder["bar"].close()
        return update
    return make


RESULT = "test_metrics.json"  # the probe's record in its run folder, named and shaped as fine-tuning's


class ProbeTrainer:
    """A probe in a run folder, framed like the trainers (``core.store.lifecycle``): status, records, phases,
    Stop. Its data are built when it is made (a wrong set exits 2 with one line before any compute)."""

    def __init__(self, cfg: ProbeConfig, run: Run | None, progress: bool = True) -> None:
        from .encoder_init import resolve_init

        self.cfg, self.run, self.progress = cfg, run, progress
        self.epoch = 0
        self.init = resolve_init(cfg.model.init)  # a wrong model.init: one line and exit 2, before any folder
        check_encoder_name("model.init", self.init, cfg.model.encoder)  # as is another encoder's weights
        self.splits = checked_splits(cfg, progress=progress, probe=True)  # what the launch form checks too
        # its weights read now: a bad file is one line and no folder; fit() probes this encoder
        self.encoder = build_probe_encoder(cfg, bands_of(self.splits.train))

    def fit(self, stop: StopFlag | None = None) -> str:
        (self.run.path / RESULT).unlink(missing_ok=True)  # a resumed probe starts again: no stale score meanwhile
        with RunLife(self.run, lambda: self.epoch, self.cfg.train.epochs, stop=stop, progress=self.progress,
                     desc="probe head") as life:
            if stop is not None:
                stop.interrupt()  # no checkpoint to stop at: a Stop ends the probe where it is

            def epoch_done(epoch: int, loss: float, lr: float) -> None:
                self.epoch = epoch
                life.record("metrics.jsonl", [{"step": epoch, "epoch": epoch, "loss": round(loss, 6),
                                               "lr": lr, "time": time.time()}])
                life.stepped(loss=f"{loss:.4f}")

            life.log(f"linear probe of {self.cfg.model.init} ({self.cfg.model.encoder}) on {self.cfg.data.name}: "
                     f"{len(self.splits.train)} training tiles, {self.cfg.train.epochs} epochs")
            for note in self._notes():
                life.log(f"warning: {note}")
                if note != neighbours_note(self.splits):  # the terminal too (the split warned that one itself)
                    say(f"warning: {note}", err=True)
            result = run_probe(self.cfg, splits=self.splits, progress=self.progress, on_epoch=epoch_done,
                               encoder=self.encoder)
            record = {**result.record(self.cfg), "class_table": self.splits.classes}  # colours for the app
            if notes := self._notes():  # its test images are no unseen scenes: the page says so
                record["not_unseen"] = "; ".join(notes)
            atomic_write_json(self.run.path / RESULT, record)
            s = result.test.scores
            life.flush(best_miou=result.val.miou if result.val is not None else None, test_miou=s.miou)
            life.log(f"{result.split} ({len(result.test.scenes)} {result.test.method}): mIoU {s.miou:.4f} "
                     f"OA {s.overall_accuracy:.4f} kappa {s.kappa:.4f} ({result.seconds['total']:.0f} s)")
        return life.state

    def _notes(self) -> list[str]:
        """Why its scores are not on unseen scenes: test tiles cut from training scenes, or an encoder that was
        pretrained on them (``lineage``: the frozen encoder has read them)."""
        notes = (neighbours_note(self.splits), init_note(self.init, self.splits.scenes))
        return [n for n in notes if n]


def main(argv: list[str] | None = None) -> int:
    """``python -m core.probe`` (its command line: ``core.seg.probe_cli``)."""
    from .probe_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":  # as the app's launcher starts it: a training process (core/host_memory.py)
    keep_freed_host_memory()
    sys.exit(main())
