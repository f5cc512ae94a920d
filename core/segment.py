"""Segment image files with a segmentation checkpoint, from the shell.

    python -m core.segment IMAGE [IMAGE ...] [--checkpoint PATH] --out DIR [--tile 512] [--overlap 0.25]
                           [--batch-size 4] [--tta] [--max-pixels N] [--device auto]

Without ``--checkpoint`` the first existing of ``checkpoints/dubai_seg.safetensors`` (the real-imagery demo model)
and ``checkpoints/synthetic_seg.safetensors`` in the repository is used.

Per image ``<stem>`` it writes into ``--out``: ``<stem>_mask.png`` (class indices, 8-bit grey), ``<stem>_color.png``
(class colours), ``<stem>_overlay.png`` (colours over the image at 50%), ``<stem>_areas.csv`` (class, pixels,
percent, square_metres when the pixel size is known) and, for georeferenced input, ``<stem>_mask.tif`` (the mask
with the input's CRS and transform). Two inputs with the same stem get ``<stem>-2`` and so on. Images are read by
the rules of ``core.imageio``; what was done to each file's bands is printed.

A bad image is reported as one line ``error: <path>: <reason>`` on stderr and the others are still processed; the
exit code is 2 if any image failed or the checkpoint cannot be used, 0 otherwise. No tracebacks.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .checkpoint import CheckpointError
from .device import pick_device
from .imageio import DEFAULT_MAX_PIXELS, ImageError, LoadedImage, read_image, write_mask_geotiff
from .infer import check_tile, class_areas, colorize, count_windows, overlap_pixels, overlay, predict
from .segmodel import load_seg_model

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINTS = ("checkpoints/dubai_seg.safetensors", "checkpoints/synthetic_seg.safetensors")


def default_checkpoint(root: Path = ROOT) -> Path:
    """The first existing of the shipped demo checkpoints; CheckpointError when there is none."""
    for rel in DEFAULT_CHECKPOINTS:
        if (root / rel).is_file():
            return root / rel
    raise CheckpointError("no checkpoint given and none of the default ones exists ("
                          + ", ".join(str(root / r) for r in DEFAULT_CHECKPOINTS) + "); pass --checkpoint PATH")


def _write_areas(f: Any, areas: list[dict[str, Any]]) -> None:
    w = csv.writer(f)
    w.writerow(["class", "pixels", "percent", "square_metres"])
    for row in areas:
        sq = row["square_metres"]
        w.writerow([row["name"], row["pixels"], f"{row['percent']:.4f}", "" if sq is None else f"{sq:.4f}"])


def write_areas_csv(path: Path, areas: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        _write_areas(f, areas)


@dataclass
class Segmentation:
    """One image's prediction and everything the interfaces show or offer for download."""

    rgb: np.ndarray
    mask: np.ndarray
    classes: list[dict[str, Any]]
    areas: list[dict[str, Any]]
    profile: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def overlay(self, opacity: float = 0.5) -> np.ndarray:
        return overlay(self.rgb, self.mask, self.classes, opacity)

    def color(self) -> np.ndarray:
        return colorize(self.mask, self.classes)

    def mask_png(self) -> bytes:
        return _png(self.mask)

    def areas_csv(self) -> str:
        buf = io.StringIO()
        _write_areas(buf, self.areas)
        return buf.getvalue()

    def geotiff(self) -> bytes | None:
        """The mask as a GeoTIFF with the input's CRS and transform; None when the input had no georeference."""
        if self.profile is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "mask.tif"
            write_mask_geotiff(path, self.mask, self.profile, self.classes)
            return path.read_bytes()


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def segment_loaded(loaded: LoadedImage, model: torch.nn.Module, card: dict[str, Any], *, tile: int = 512,
                   overlap: float = 0.25, batch_size: int = 4, tta: bool = False,
                   device: torch.device | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Segmentation:
    """Predict one loaded image in memory: what the workbench's Segment page and the Gradio demo call."""
    classes = card["classes"]
    mask = predict(model, loaded.rgb, tile=tile, overlap=overlap, batch_size=batch_size, tta_flip=tta,
                   device=device, progress=progress, card=card)
    return Segmentation(rgb=loaded.rgb, mask=mask, classes=classes,
                        areas=class_areas(mask, classes, loaded.pixel_size_m), profile=loaded.profile,
                        notes=list(loaded.notes))


def segment_image(loaded: LoadedImage, model: torch.nn.Module, card: dict[str, Any], out_dir: Path, stem: str, *,
                  tile: int = 512, overlap: float = 0.25, batch_size: int = 4, tta: bool = False,
                  device: torch.device | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Path]:
    """Predict one loaded image and write its outputs as ``out_dir/<stem>_*``; return them by kind."""
    seg = segment_loaded(loaded, model, card, tile=tile, overlap=overlap, batch_size=batch_size, tta=tta,
                         device=device, progress=progress)
    out_dir = Path(out_dir)
    outputs = {"mask": out_dir / f"{stem}_mask.png", "color": out_dir / f"{stem}_color.png",
               "overlay": out_dir / f"{stem}_overlay.png", "areas": out_dir / f"{stem}_areas.csv"}
    Image.fromarray(seg.mask).save(outputs["mask"])  # 2-D uint8: mode L
    Image.fromarray(seg.color()).save(outputs["color"])
    Image.fromarray(seg.overlay(0.5)).save(outputs["overlay"])
    write_areas_csv(outputs["areas"], seg.areas)
    if loaded.profile is not None:
        outputs["geotiff"] = out_dir / f"{stem}_mask.tif"
        write_mask_geotiff(outputs["geotiff"], seg.mask, loaded.profile, seg.classes)
    return outputs


# ------------------------------------------------------------------------------------------------ CLI
def _tile(text: str) -> int:
    try:
        return check_tile(int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _overlap(text: str) -> float:
    try:
        value = float(text)
        overlap_pixels(value, 1 << 30)  # range check only; the tile is checked later
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"overlap must be a fraction in [0, 1) or pixels: {err}") from None
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.segment", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (TIFF/GeoTIFF, PNG, JPEG, ...)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="segmentation checkpoint (.safetensors); default: the shipped demo model")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--tile", type=_tile, default=512, help="window side in pixels, a multiple of 32 (512)")
    p.add_argument("--overlap", type=_overlap, default=0.25,
                   help="window overlap: a fraction of the tile below 1, else pixels (0.25)")
    p.add_argument("--batch-size", type=_positive, default=4, help="windows per forward pass (4)")
    p.add_argument("--tta", action="store_true", help="average with a horizontally flipped pass")
    p.add_argument("--max-pixels", type=_positive, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse images with more pixels ({DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _err(msg: str) -> None:
    print("error: " + " ".join(str(msg).split()), file=sys.stderr, flush=True)


def _unique_stem(path: Path, used: set[str]) -> str:
    stem = path.stem or "image"
    name, k = stem, 2
    while name in used:
        name, k = f"{stem}-{k}", k + 1
    used.add(name)
    return name


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage line and reason
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        return _run(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


def _run(args: argparse.Namespace) -> int:
    try:
        overlap_pixels(args.overlap, args.tile)
    except ValueError as err:
        _err(f"--overlap: {err}")
        return 2
    try:
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as err:
        _err(f"--device {args.device}: {str(err).removeprefix('train.device: ')}")
        return 2
    ckpt = args.checkpoint
    try:
        ckpt = ckpt if ckpt is not None else default_checkpoint()
        model, card = load_seg_model(ckpt, device=device)
        classes = card["classes"]
        if not isinstance(classes, list) or not classes or not all(isinstance(c, dict) and "name" in c
                                                                     for c in classes):
            raise CheckpointError(f"{ckpt}: its card's classes are not a list of {{'name', 'color'}} entries")
        if len(classes) > 256:
            raise CheckpointError(f"{ckpt}: {len(classes)} classes do not fit an 8-bit mask")
    except CheckpointError as err:
        _err(err)
        return 2
    except Exception as err:  # noqa: BLE001 - a card that builds no model, odd files: one line, never a traceback
        _err(f"checkpoint {ckpt}: cannot be used ({type(err).__name__}: {err})")
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _err(f"--out {args.out}: {err.strerror or err}")
        return 2

    print(f"checkpoint {ckpt} ({card['arch']}, {card['encoder']}, {len(classes)} classes: "
          f"{', '.join(c['name'] for c in classes)}) on {device}", flush=True)
    failed = 0
    used: set[str] = set()
    for raw in args.images:
        path = Path(raw)
        try:
            loaded = read_image(path, max_pixels=args.max_pixels)
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
        print(f"{path}: {w}x{h} pixels{geo}", flush=True)
        for note in loaded.notes:
            print(f"  note: {note}", flush=True)
        stem = _unique_stem(path, used)
        total = count_windows(h, w, args.tile, args.overlap)
        bar = tqdm(total=total, desc=stem, unit="win", file=sys.stderr, disable=args.no_progress or None,
                   leave=False, dynamic_ncols=True)

        def progress(done: int, _total: int, bar: Any = bar) -> None:
            bar.update(done - bar.n)

        try:
            outputs = segment_image(loaded, model, card, args.out, stem, tile=args.tile, overlap=args.overlap,
                                    batch_size=args.batch_size, tta=args.tta, device=device, progress=progress)
        except KeyboardInterrupt:
            raise
        except MemoryError:
            bar.close()
            _err(f"{path}: out of memory (try a smaller --tile or --batch-size)")
            failed += 1
            continue
        except OSError as err:
            bar.close()
            _err(f"{path}: cannot write outputs ({err.strerror or err})")
            failed += 1
            continue
        except Exception as err:  # noqa: BLE001 - e.g. CUDA out of memory: one line, go on with the next image
            bar.close()
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            _err(f"{path}: segmentation failed ({type(err).__name__}: {first})")
            failed += 1
            continue
        finally:
            del loaded
        bar.close()
        print(f"  wrote {', '.join(p.name for p in outputs.values())}", flush=True)
    n = len(args.images)
    print(f"{n - failed} of {n} image(s) segmented into {args.out}" + (f"; {failed} failed" if failed else ""),
          flush=True)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
