"""Export a run's model as a small, self-describing checkpoint (what ``checkpoints/`` ships).

    python -m core.export RUN_DIR --out checkpoints/NAME.safetensors [--fp32]

A pretraining run gives its encoder; a fine-tuning run its best segmentation model. Weights are stored in
float16 by default (half the size; they load into float32 models unchanged) with the card inside the file and
beside it, including the sha256 of the file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..cli_args import export_parser
from ..console import say
from .checkpoint import CheckpointError, read_metadata, write_safetensors
from .out_target import OutTargetError, check_out_file
from .portable import portable
from .runs import NotARunError, atomic_write_json, open_run_arg
from ..seg.lineage import KEY, run_pretrain_scenes


def export_checkpoint(src: Path, out: Path, keep: str, strip: str, card: dict[str, Any], fp16: bool) -> str:
    """Copy the tensors of ``src`` whose names start with ``keep`` (minus ``strip``), optionally as float16."""
    tensors = {}
    for name, t in load_file(str(src)).items():
        if not name.startswith(keep):
            continue
        if fp16 and t.is_floating_point():
            t = t.to(torch.float16)
        tensors[name[len(strip):]] = t.contiguous()
    card = portable({**card, "dtype": "float16" if fp16 else "float32"})  # published: no machine paths
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = write_safetensors(out, tensors, {"card": json.dumps(card)})
    atomic_write_json(out.with_suffix(".json"), {**card, "sha256": digest, "file": out.name,
                                                 "size_mb": round(out.stat().st_size / 2**20, 1)})
    return digest


def export_run(run_dir: str | Path, out: Path, fp16: bool = True) -> dict[str, Any]:
    run = open_run_arg(run_dir)
    best = run.checkpoint_dir / "best.safetensors"
    if best.exists():  # fine-tuning run: the whole segmentation model, keys as the model has them
        card = read_metadata(best)["card"]
        card.update(source_run=str(run.path), test_metrics=_read_json(run.path / "test_metrics.json"))
        export_checkpoint(best, out, "model.", "", card, fp16)
    else:
        last = run.checkpoint_dir / "last.safetensors"
        if not last.exists():
            kind = run.kind()
            why = {"probe": ": a linear probe keeps no model (its frozen encoder is its model.init's; export that "
                            "run instead)",
                   "compare": ": a comparison's models are in its units' run folders under it"}.get(kind, "")
            raise NotARunError(f"run {run.path} has no checkpoint to export{why}")
        card = read_metadata(last)["card"]
        scenes = run_pretrain_scenes(run.path)  # the record a fine-tuning from this file reads (core.seg.lineage)
        card.update(kind="encoder", source_run=str(run.path), **({KEY: scenes} if scenes is not None else {}))
        export_checkpoint(last, out, "model.encoder.", "model.", card, fp16)
    return json.loads(out.with_suffix(".json").read_text())


class ExportTargetError(ValueError):
    """An ``--out`` that cannot take a checkpoint and its card, said in one line before any work."""


def check_target(out: Path) -> bool:
    """Refuse an ``--out`` that is no ``.safetensors`` name (the card goes beside it as ``NAME.json``: a review's
    ``--out model.json`` wrote the model, then its card over it), a folder, or one under a file or in a folder that
    cannot be written; nothing is made yet. Returns whether a file is replaced."""
    try:
        replaced = check_out_file(out, example="model.safetensors", beside=(".json", "card"))
    except OutTargetError as err:
        raise ExportTargetError(str(err)) from None
    if out.suffix != ".safetensors":
        raise ExportTargetError(f"--out {out}: give a file name ending in .safetensors (its card is written beside "
                                f"it as {out.with_suffix('.json').name})")
    return replaced


def _read_json(p: Path) -> Any:
    return json.loads(p.read_text()) if p.exists() else None


def main(argv: list[str] | None = None) -> int:
    args = export_parser().parse_args(argv)
    out = Path(args.out)
    try:
        replaced = check_target(out)
        card = export_run(args.run_dir, out, fp16=not args.fp32)
    except (NotARunError, CheckpointError, FileNotFoundError, ExportTargetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder: one line, not a traceback
        print(f"error: cannot write {out}: {err.strerror or err}", file=sys.stderr)
        return 2
    say(f"{'replaced' if replaced else 'wrote'} {out} ({card['size_mb']} MB, sha256 {card['sha256'][:12]}…) and its "
        f"card {out.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
