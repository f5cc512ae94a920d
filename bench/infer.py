"""Sliding-window inference cost and memory, side by side in one run.

    python bench/infer.py [--tile 512] [--overlap 0.25] [--batch-size 4] [--repeats 3] [--size 10000]
                          [--pipeline-size 2448] [--skip-speed] [--skip-pipeline] [--skip-memory] [--device cpu]

1. Speed, on a 2048 x 2048 random-texture image with a random resnet18 DeepLabV3+ (6 classes): ``predict`` (window
   cutting, normalisation, forward, weighted blending, argmax) against plain forward passes of (B, 3, T, T) float
   batches, interleaved round by round so that machine noise hits them alike:
     - "forward over the windows": the same number of T x T windows the sliding window needs at this overlap, in
       the same batches (this is the overhead of predict itself; target <= 1.25x);
     - "forward over H*W": ceil(H*W / T^2) tiles, i.e. the pixels of the image once (this adds the cost of the
       overlap: about (1 + overlap / (1 - overlap))^2 for large images).
   ``predict`` with a near-free 1x1-conv model is timed too: its own work alone, which machine noise (other
   processes on the cores) cannot hide the way it can hide in the difference of two long timings.
2. The whole upload-to-result pipeline on a ``--pipeline-size`` (default 2448, a DeepGlobe scene) JPEG, against
   plain forward passes over the same windows, interleaved: reading the file (``core.imaging.imageio``), the no-data mask,
   the domain score (``core.seg.domain``, ``MAX_CROPS`` encoder crops), ``predict`` and the areas
   (``core.seg.segment.segment_loaded`` with a fingerprinted model); also in seconds per megapixel (target: within 1.1x
   of the bare forwards). ``--checkpoint auto`` choice among the shipped models is timed beside it (scoring every
   candidate costs extra encoder crops).
3. Peak memory of ``predict`` on a ``--size`` x ``--size`` image (default 10000, i.e. 100 M pixels), run in a child
   process; its peak resident set (``ru_maxrss``) is printed beside its RSS before ``predict`` (model + image)
   (target < 4 GiB). On 2 CPU cores, 10000 x 10000 at T = 512 / overlap 0.25 is 676 windows: roughly 4-10 minutes
   depending on the machine; ``--size 4000`` (121 windows) takes about a minute. The accumulator is (C, T, W), so
   the memory above the image and mask grows with the width only.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core.seg.infer import count_windows, predict
from core.seg.segmodel import build_seg_model, make_card

CLASSES = [{"name": n, "color": c} for n, c in [("building", [60, 16, 152]), ("land", [132, 41, 246]),
                                                ("road", [110, 193, 228]), ("vegetation", [254, 221, 58]),
                                                ("water", [226, 169, 41]), ("unlabeled", [155, 155, 155])]]


def small_model() -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    card = make_card(arch="deeplabv3plus", encoder="resnet18", classes=CLASSES)
    return build_seg_model(card).eval(), card


def texture(size: int, seed: int = 0) -> np.ndarray:
    """A random aerial-ish texture: smooth blobs plus pixel noise, filled strip by strip (no big temporaries)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, size // 64), max(2, size // 64), 3), dtype=np.uint8)
    side = min(size, 2048)
    base = np.asarray(Image.fromarray(coarse).resize((side, side), Image.BICUBIC))
    out = np.empty((size, size, 3), np.uint8)
    for y in range(0, size, side):
        h = min(side, size - y)
        for x in range(0, size, side):
            w = min(side, size - x)
            noise = rng.integers(-20, 21, (h, w, 3), dtype=np.int16)
            out[y:y + h, x:x + w] = np.clip(base[:h, :w].astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_tiles(model: torch.nn.Module, n_tiles: int, tile: int, batch_size: int, device: torch.device) -> float:
    """Seconds for plain forward passes over ``n_tiles`` tiles, batched like predict."""
    gen = torch.Generator().manual_seed(1)
    batches = []
    left = n_tiles
    while left > 0:
        b = min(batch_size, left)
        batches.append(torch.randn(b, 3, tile, tile, generator=gen))
        left -= b
    sync(device)
    t = time.perf_counter()
    with torch.inference_mode():
        for x in batches:
            model(x.to(device))
    sync(device)
    return time.perf_counter() - t


def speed(args: argparse.Namespace, device: torch.device) -> None:
    model, card = small_model()
    model.to(device)
    size = args.speed_size
    image = texture(size)
    n_win = count_windows(size, size, args.tile, args.overlap)
    n_exact = math.ceil(size * size / args.tile ** 2)
    print(f"speed: {size}x{size} image, tile {args.tile}, overlap {args.overlap}, batch {args.batch_size}: "
          f"{n_win} windows; H*W = {n_exact} tiles' worth of pixels; device={device} "
          f"threads={torch.get_num_threads()} repeats={args.repeats}", flush=True)
    forward_tiles(model, args.batch_size, args.tile, args.batch_size, device)  # warm-up
    free = torch.nn.Conv2d(3, len(CLASSES), 1).to(device).eval()  # a near-free model: predict's own work
    times: dict[str, list[float]] = {"predict": [], "forward_windows": [], "forward_hw": [], "own_work": []}
    for r in range(args.repeats):
        sync(device)
        t = time.perf_counter()
        predict(model, image, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, card=card,
                device=device)
        sync(device)
        times["predict"].append(time.perf_counter() - t)
        times["forward_windows"].append(forward_tiles(model, n_win, args.tile, args.batch_size, device))
        times["forward_hw"].append(forward_tiles(model, n_exact, args.tile, args.batch_size, device))
        sync(device)
        t = time.perf_counter()
        predict(free, image, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, device=device)
        sync(device)
        times["own_work"].append(time.perf_counter() - t)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'candidate':>34} {'median s':>9} {'predict x':>10}")
    print(f"{'predict (sliding window)':>34} {med['predict']:9.2f} {1.0:10.2f}")
    print(f"{f'forward over the windows ({n_win})':>34} {med['forward_windows']:9.2f} "
          f"{med['predict'] / med['forward_windows']:10.2f}")
    print(f"{f'forward over H*W ({n_exact} tiles)':>34} {med['forward_hw']:9.2f} "
          f"{med['predict'] / med['forward_hw']:10.2f}")
    own = med["own_work"]
    print(f"predict's own work (cutting, normalising, blending, argmax; timed with a 1x1-conv model): {own:.2f}s "
          f"= {100 * own / med['forward_windows']:.1f}% of the forward over the windows, i.e. an expected "
          f"{(med['forward_windows'] + own) / med['forward_windows']:.3f}x without machine noise")
    ratio = med["predict"] / med["forward_windows"]
    print(f"predict / forward over the windows = {ratio:.3f}x (target <= 1.25x: "
          f"{'met' if ratio <= 1.25 else 'NOT met'}); predict / forward over H*W = "
          f"{med['predict'] / med['forward_hw']:.3f}x (includes the overlap)", flush=True)


def pipeline(args: argparse.Namespace, device: torch.device) -> None:
    import tempfile

    from PIL import Image

    from core.store.catalog import segmentation_models
    from core.seg.domain import MAX_CROPS, fingerprint
    from core.imaging.imageio import read_image
    from core.seg.model_choice import ModelCache, choose_model
    from core.seg.nodata import nodata_mask
    from core.seg.segment import segment_loaded

    model, card = small_model()
    model.to(device)
    size = args.pipeline_size
    image = texture(size, seed=3)
    card["domain"] = {"gsd_m": None, "fingerprint": fingerprint(model, [texture(256, seed=k) for k in range(16)],
                                                                device)}
    n_win = count_windows(size, size, args.tile, args.overlap)
    mpix = size * size / 1e6
    shipped = [e for e in segmentation_models() if e.label.startswith("shipped: ")]
    print(f"pipeline: {size}x{size} JPEG ({mpix:.1f} Mpx), tile {args.tile}, overlap {args.overlap}: {n_win} windows; "
          f"domain score from {MAX_CROPS} crops; auto among {len(shipped)} shipped models; device={device} "
          f"threads={torch.get_num_threads()} repeats={args.repeats}", flush=True)
    times: dict[str, list[float]] = {"pipeline": [], "forward_windows": [], "auto_choice": []}
    cache = ModelCache()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scene.jpg"
        Image.fromarray(image).save(path, quality=92)
        forward_tiles(model, args.batch_size, args.tile, args.batch_size, device)  # warm-up
        for r in range(args.repeats):
            sync(device)
            t = time.perf_counter()
            loaded = read_image(path)
            segment_loaded(loaded, model, card, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                           device=device)
            sync(device)
            times["pipeline"].append(time.perf_counter() - t)
            times["forward_windows"].append(forward_tiles(model, n_win, args.tile, args.batch_size, device))
            t = time.perf_counter()
            if shipped:
                choose_model(loaded.rgb, nodata_mask(loaded), None, shipped, cache, device)
            times["auto_choice"].append(time.perf_counter() - t)
            print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["pipeline"] / med["forward_windows"]
    print(f"pipeline (read + no-data + domain score + predict + areas): {med['pipeline']:.2f}s = "
          f"{med['pipeline'] / mpix:.2f} s/Mpx; bare forward over the {n_win} windows: {med['forward_windows']:.2f}s "
          f"= {med['forward_windows'] / mpix:.2f} s/Mpx; ratio {ratio:.3f}x (target <= 1.1x: "
          f"{'met' if ratio <= 1.1 else 'NOT met'})")
    print(f"auto choice among {len(shipped)} shipped models (scoring each, loads cached): {med['auto_choice']:.2f}s "
          f"more = {(med['pipeline'] + med['auto_choice']) / med['forward_windows']:.3f}x of the bare forwards "
          "with --checkpoint auto", flush=True)


def rss_now_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def memory_child(args: argparse.Namespace, device: torch.device) -> None:
    model, card = small_model()
    model.to(device)
    image = texture(args.size)
    before = rss_now_kib()
    n_win = count_windows(args.size, args.size, args.tile, args.overlap)
    t0 = time.perf_counter()
    last = [t0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 30 or done == total:
            last[0] = now
            print(f"  memory run: {done}/{total} windows, {now - t0:.0f}s", file=sys.stderr, flush=True)

    mask = predict(model, image, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, card=card,
                   device=device, progress=progress)
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"size": args.size, "windows": n_win, "seconds": elapsed, "rss_before_kib": before,
                      "peak_kib": peak, "mask_shape": list(mask.shape),
                      "cuda_peak_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None}))


def memory(args: argparse.Namespace) -> None:
    n_win = count_windows(args.size, args.size, args.tile, args.overlap)
    print(f"memory: predict on {args.size}x{args.size} ({args.size ** 2 / 1e6:.0f} M pixels, {n_win} windows) "
          f"in a child process ...", flush=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", "--size", str(args.size),
           "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch-size", str(args.batch_size),
           "--device", args.device]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print(f"memory child failed with exit code {proc.returncode}")
        return
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    gib = 2 ** 20
    image_mib = args.size ** 2 * 3 / 2 ** 20
    print(f"  predict took {res['seconds']:.0f}s ({res['seconds'] / n_win:.2f}s per window)")
    print(f"  RSS before predict (model + {image_mib:.0f} MiB image): {res['rss_before_kib'] / 1024:.0f} MiB")
    print(f"  peak RSS: {res['peak_kib'] / gib:.2f} GiB (RUSAGE_CHILDREN: {children / gib:.2f} GiB); "
          f"predict added {(res['peak_kib'] - res['rss_before_kib']) / 1024:.0f} MiB "
          f"(mask {args.size ** 2 / 2 ** 20:.0f} MiB)")
    if res.get("cuda_peak_bytes"):
        print(f"  CUDA peak allocated: {res['cuda_peak_bytes'] / 2 ** 30:.2f} GiB")
    print(f"  target < 4 GiB: {'met' if res['peak_kib'] < 4 * gib else 'NOT met'}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--speed-size", type=int, default=2048)
    p.add_argument("--size", type=int, default=10000, help="side of the image for the memory run (10000)")
    p.add_argument("--pipeline-size", type=int, default=2448, help="side of the pipeline run's JPEG (2448)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-pipeline", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_child:
        memory_child(args, device)
        return
    if not args.skip_speed:
        speed(args, device)
    if not args.skip_pipeline:
        pipeline(args, device)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
