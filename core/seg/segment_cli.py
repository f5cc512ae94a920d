"""Segment image files with a segmentation checkpoint, from the shell (``core.seg.segment`` does the segmenting).

    python -m core.segment IMAGE [IMAGE ...] [--checkpoint PATH] --out DIR [--tile 512] [--overlap 0.25]
                           [--batch-size 4] [--tta] [--max-megapixels 50] [--device auto] [--labels MASK ...]

Without ``--checkpoint`` (or with ``auto``) each image gets the model whose training data it fits best among the
shipped ones and those of runs (``core.seg.model_choice``); a model trained on generated scenes only for a generated
image.

Per image ``<stem>`` it writes into ``--out``: ``<stem>_mask.png`` (class indices, a palette PNG drawn in the
classes' colours), ``<stem>_color.png``
(class colours), ``<stem>_overlay.png`` (colours over the image at 50%), ``<stem>_areas.csv`` (class, pixels,
percent of the pixels with data, square_metres when the pixel size is known and the image is in the model's domain,
and a warning column, filled when it is not; a last ``no_data`` row, with no percent, counts the pixels without
data) and, for georeferenced input, ``<stem>_mask.tif`` (the mask with the input's CRS and transform, and a warning in its
tags when there is one). Two inputs with the same stem get ``<stem>-2`` and so on. Images are read by
the rules of ``core.imaging.imageio``; what was done to each file's bands is printed.

``--labels`` gives one label mask per image, in the same order (``-`` for an image without one): each prediction is scored against its mask as the
Segment page scores it (``core.seg.label_score``: class indices or colours, a palette PNG by its colours), a line
per image (mIoU, pixel accuracy) is printed and the report JSON holds ``label_score`` (``miou``, ``accuracy``,
``iou`` per class name, how the mask was read, the shares left out).

A bad image is reported as one line ``error: <path>: <reason>`` on stderr and the others are still processed. Exit
codes: 0 all done; 1 every image segmented and written, but a label mask was refused (its line says why; through
``false-wb segment``, 1 is also a reader gone from a pipe); 2 an image failed, or the arguments or the checkpoint
cannot be used. No tracebacks.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..cli_args import segment_parser
from ..console import bar_stream, say
from ..device import pick_device
from ..imaging.budget import max_pixels
from ..imaging.imageio import ImageError, read_image
from ..store.checkpoint import CheckpointError
from .infer import overlap_pixels
from .label_score import LabelMaskError, LabelScore, check_label_mask_size, score_label_file
from .model_choice import ModelCache, given_model
from .scene_role import NOT_RECOGNISED, note_scene, role_note, unseen_check
from .segment import segment_choosing
from .segmentation_result import Segmentation, write_outputs
from .segmodel import load_seg_model


def _err(msg: str) -> None:
    say("error: " + " ".join(str(msg).split()), err=True)


def _unique_stem(path: Path, used: set[str]) -> str:
    stem = path.stem or "image"
    name, k = stem, 2
    while name in used:
        name, k = f"{stem}-{k}", k + 1
    used.add(name)
    return name


def main(argv: Sequence[str] | None = None) -> int:
    parser = segment_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage line and reason
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        return _run(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


def _load_given(ckpt: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    try:
        model, card = load_seg_model(ckpt, device=device)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - a card that builds no model, odd files: one line, never a traceback
        raise CheckpointError(f"checkpoint {ckpt}: cannot be used ({type(err).__name__}: {err})") from None
    return model, card


class _Models:
    """The candidates for ``--checkpoint auto`` or the one model ``--checkpoint PATH`` names, loaded once each."""

    def __init__(self, checkpoint: str, device: torch.device) -> None:
        self.cache = ModelCache()
        self.entries: list[Any] = []
        self.given = None
        if checkpoint == "auto":
            from ..store.catalog import segmentation_models

            self.entries = [e for e in segmentation_models() if e.card.get("kind") == "segmentation"]
            if not self.entries:
                raise CheckpointError("--checkpoint auto: no segmentation model in checkpoints/ nor in runs/; "
                                      "pass --checkpoint PATH")
            say(f"checkpoint auto: choosing per image among {len(self.entries)} model(s): "
                + ", ".join(e.label for e in self.entries[:6]) + (" ..." if len(self.entries) > 6 else ""))
            return
        from ..store.catalog import named_checkpoint

        path = named_checkpoint(checkpoint)
        model, card = _load_given(path, device)
        self.cache.put(path, device, model, card)
        self.given = given_model(path, card)
        classes = card["classes"]
        say(f"checkpoint {path} ({card['arch']}, {card['encoder']}, {len(classes)} classes: "
            f"{', '.join(c['name'] for c in classes)}) on {device}")


NO_MASK = "-"  # in --labels: this image has no mask (images with and without masks in one call)


def _score_labels(seg: Segmentation, mask: str) -> tuple[LabelScore | None, str | None]:
    """``seg`` scored against the label mask file ``mask`` (into its report's ``label_score``), or why not."""
    try:
        scored = score_label_file(seg.mask, mask, seg.classes, rule=seg.label_masks)
    except LabelMaskError as err:
        return None, str(err)
    seg.label_score = scored.report(seg.classes, mask, unseen_check(seg.notes))
    return scored, None


def _mask_refused(mask: str, image: Path) -> str | None:
    try:
        check_label_mask_size(mask, image)
    except LabelMaskError as err:
        return str(err)
    return None


def _run(args: argparse.Namespace) -> int:
    if args.labels is not None and len(args.labels) != len(args.images):
        _err(f"--labels: {len(args.labels)} mask(s) for {len(args.images)} image(s): give one mask per image, in "
             "the same order")
        return 2
    try:
        overlap_pixels(args.overlap, args.tile)
    except ValueError as err:
        _err(f"--overlap: {err}")
        return 2
    try:
        budget = max_pixels(args.max_megapixels)
    except ValueError as err:
        _err(f"pixel budget: {err}")
        return 2
    try:
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as err:
        _err(f"--device {args.device}: {str(err).removeprefix('train.device: ')}")
        return 2
    if args.out.exists() and not args.out.is_dir():  # said before the model loads, in these words (not EEXIST's)
        _err(f"--out {args.out}: is a file, not a folder")
        return 2
    try:
        models = _Models(str(args.checkpoint), device)
    except CheckpointError as err:
        _err(err)
        return 2
    made_out = not args.out.exists()
    try:
        args.out.mkdir(parents=True, exist_ok=True)  # made first: an unwritable --out is said before any work
    except OSError as err:
        _err(f"--out {args.out}: {err.strerror or err}")
        return 2

    failed = unscored = 0
    used: set[str] = set()
    for k, raw in enumerate(args.images):
        path = Path(raw)
        try:
            loaded = read_image(path, max_pixels=budget)
        except ImageError as err:
            _err(f"{path}: {err}")
            failed += 1
            continue
        except Exception as err:  # noqa: BLE001 - never a traceback for one bad file
            _err(f"{path}: cannot be read ({type(err).__name__}: {err})")
            failed += 1
            continue
        h, w = loaded.shape
        geo = "" if loaded.profile is None else (
            f", georeferenced, {loaded.pixel_size_m:.3g} m/pixel" if loaded.pixel_size_m else ", georeferenced")
        say(f"{path}: {w}x{h} pixels{geo}")
        mask = args.labels[k] if args.labels and args.labels[k] != NO_MASK else None
        early = _mask_refused(mask, path) if mask else None
        if early is not None:  # said now (under its image's line), from the headers, not after a minute of segmenting
            _err(f"{path}: labels {mask}: {early}")
            unscored += 1
        stem = _unique_stem(path, used)
        bar = None
        try:
            bar = tqdm(desc=stem, unit="win", file=bar_stream(), disable=args.no_progress or None, leave=False,
                       dynamic_ncols=True)

            def progress(done: int, total: int, bar: Any = bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            seg = segment_choosing(loaded, models.entries, models.cache, given=models.given, device=device,
                                   given_by="named with --checkpoint",
                                   resample=not args.no_resample, borders=not args.keep_borders, tile=args.tile,
                                   overlap=args.overlap, batch_size=args.batch_size, tta=args.tta,
                                   progress=progress)
            note_scene(seg, path, path)  # a copy elsewhere too, where the card's data set is on this machine
            scored, why = _score_labels(seg, mask) if mask and early is None else (None, None)
            before = {p.name for p in Path(args.out).glob(f"{glob.escape(stem)}_*")} if Path(args.out).is_dir() \
                else set()
            outputs = write_outputs(seg, args.out, stem, str(path))
        except KeyboardInterrupt:
            raise
        except (ImageError, CheckpointError) as err:
            _err(f"{path}: {err}")
            failed += 1
            continue
        except MemoryError:
            _err(f"{path}: out of memory (try a smaller --tile or --batch-size)")
            failed += 1
            continue
        except OSError as err:
            _err(f"{path}: cannot write outputs ({err.strerror or err})")
            failed += 1
            continue
        except Exception as err:  # noqa: BLE001 - e.g. CUDA out of memory: one line, go on with the next image
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            _err(f"{path}: segmentation failed ({type(err).__name__}: {first})")
            failed += 1
            continue
        finally:
            if bar is not None:
                bar.close()
            del loaded
        say(f"  model {seg.model_line()}")
        for note in seg.notes:
            say(f"  note: {note}")
        if seg.warning:
            say(f"  warning: {seg.warning}")
        replaced = [p.name for p in outputs.values() if p.name in before]  # an earlier call's: said, not silent
        say(f"  wrote {', '.join(p.name for p in outputs.values())}"
            + (f" (replacing an earlier result's {len(replaced)} file{'s' if len(replaced) > 1 else ''})"
               if replaced else ""))
        if scored is not None:
            say(f"  labels {mask}: {scored.line()}")
            if (absent := scored.absent_note(seg.classes)) is not None:
                say(f"  note: {absent}")
            # a recognised scene's note stands above; else say that a crop would not be recognised (a review read
            # a crop of a training image scored at 78 % with no word on screen: it stood only in the report)
            if not role_note(seg.notes):
                say(f"  note: the image is {NOT_RECOGNISED}")
        elif why is not None:
            _err(f"{path}: labels {mask}: {why}")
            unscored += 1
    n = len(args.images)
    if failed == n and made_out:
        with contextlib.suppress(OSError):
            args.out.rmdir()  # nothing was written: no empty folder left behind
    where = f"into {args.out}" if failed < n else "(nothing written)"
    say(f"{n - failed} of {n} image(s) segmented {where}" + (f"; {failed} failed" if failed else "")
        + (f"; {unscored} label mask(s) not scored" if unscored else ""))
    # apart: a script must tell "written, a mask unscored" from "not written" (a review found both 2)
    return 2 if failed else 1 if unscored else 0


if __name__ == "__main__":
    sys.exit(main())
