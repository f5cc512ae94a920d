"""How fast the Segment page answers one 512 x 512 upload, against the bare model forward, in one run.

    python bench/segment_ui.py [--repeats 7] [--threads 2] [--size 512] [--checkpoint PATH]

Target: "Segment answers a 512x512 upload in under 1 s on the CPU with the demo model (model already loaded)".
Measured side by side, interleaved round by round so machine noise hits both alike, medians after a warm-up:

(a) the floor: one forward pass of the model over a (1, 3, 512, 512) float tile under ``torch.inference_mode``;
(b) the page's path, with the page's own functions (``pages/segment.py``) on the PNG bytes of a generated scene:
    read (bytes -> temporary file -> ``core.imaging.imageio.read_image``), ``core.seg.segment.segment_loaded`` (tile 512,
    overlap 0.25: one window) and the screen copy, the overlay blend, the legend + area table + bar chart (with the
    chart's JSON, which ``st.plotly_chart`` sends), the mask PNG download and the overlay JPEG that ``st.image``
    makes of an RGB array.

Printed: each median (and minimum) with its ratio to the 1 s target, (b)/(a) (also per round, which other
processes on the cores disturb less), and (b)'s stages. Loading the model (once per
server, cached by the page) is timed once and is not part of either.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
from core.data import generate_scene
from core.seg.segment import segment_loaded
from core.seg.segmodel import load_seg_model

TARGET_S = 1.0


def load_page() -> ModuleType:
    """pages/segment.py as a module (its page body runs only as __main__, i.e. under Streamlit)."""
    spec = importlib.util.spec_from_file_location("segment_page", ROOT / "pages" / "segment.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the page's classes are made
    spec.loader.exec_module(module)
    return module


def png_upload(size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(generate_scene(2, size)[0]).save(buf, format="PNG")
    return buf.getvalue()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def forward_floor(model: torch.nn.Module, size: int, device: torch.device) -> float:
    """(a): the model alone over one tile."""
    x = torch.randn(1, 3, size, size, device=device)
    t = time.perf_counter()
    with torch.inference_mode():
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def page_path(page: ModuleType, data: bytes, model: torch.nn.Module, card: dict[str, Any],
              device: torch.device) -> dict[str, float]:
    """(b): what the page does for one new upload, stage by stage (seconds)."""
    upload = page.Upload(id="bench", name="bench.png", read=lambda: data)
    settings = page.Settings()
    stages: dict[str, float] = {}
    stages["read (temp file + read_image)"], loaded = timed(lambda: page.read_upload(upload))

    def predict() -> Any:
        seg = segment_loaded(loaded, model, card, tile=settings.tile, overlap=settings.overlap, tta=settings.tta,
                             device=device, progress=lambda done, total: None)
        return seg, page.screen_copy(seg, page.PREVIEW_SIDE)

    stages["segment_loaded + screen copy"], (seg, preview) = timed(predict)
    stages["overlay blend"], over = timed(lambda: preview.overlay(0.5))
    stages["legend + table + chart JSON"], _ = timed(
        lambda: (page.legend_html(seg), page.areas_frame(seg), page.areas_figure(seg).to_json()))
    stages["mask PNG (download)"], _ = timed(seg.mask_png)

    def overlay_image() -> bytes:
        """What st.image does with an RGB array and output_format="auto": JPEG at quality 100."""
        buf = io.BytesIO()
        Image.fromarray(over).save(buf, format="JPEG", quality=100)
        return buf.getvalue()

    stages["overlay JPEG (st.image)"], _ = timed(overlay_image)
    return stages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "dubai_seg.safetensors")
    p.add_argument("--size", type=int, default=512, help="side of the uploaded image (512)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    load_s, (model, card) = timed(lambda: load_seg_model(args.checkpoint, device=device))
    page = load_page()
    data = png_upload(args.size)
    print(f"checkpoint {args.checkpoint.name} ({card['arch']}, {card['encoder']}, {len(card['classes'])} classes) "
          f"loaded in {load_s:.2f}s (once per server; not timed below); device={device} "
          f"threads={torch.get_num_threads()}; upload: {args.size}x{args.size} PNG, {len(data) / 1024:.0f} KiB; "
          f"repeats={args.repeats}", flush=True)

    forward_floor(model, args.size, device)  # warm-up: first-call allocations, plotly validators, PNG codecs
    page_path(page, data, model, card, device)
    floor: list[float] = []
    full: list[float] = []
    stages: dict[str, list[float]] = {}
    for r in range(args.repeats):
        floor.append(forward_floor(model, args.size, device))
        st = page_path(page, data, model, card, device)
        full.append(sum(st.values()))
        for k, v in st.items():
            stages.setdefault(k, []).append(v)
        print(f"  round {r + 1}: forward {floor[-1]:.3f}s, page path {full[-1]:.3f}s", flush=True)

    a, b = statistics.median(floor), statistics.median(full)
    paired = statistics.median(f / x for f, x in zip(full, floor))  # per round: noise hits both alike
    print(f"\n{'candidate':>40} {'median s':>9} {'min s':>7} {'x 1 s target':>13} {'x floor':>8}")
    print(f"{'(a) model forward, 1 tile (floor)':>40} {a:9.3f} {min(floor):7.3f} {a / TARGET_S:13.2f} {1.0:8.2f}")
    print(f"{'(b) page path for one upload':>40} {b:9.3f} {min(full):7.3f} {b / TARGET_S:13.2f} {b / a:8.2f}")
    print(f"(b)/(a) per round, median: {paired:.2f}x; of the minima: {min(full) / min(floor):.2f}x")
    print("\n(b) by stage (medians; they need not add up to the median of the sums):")
    for k, v in stages.items():
        m = statistics.median(v)
        print(f"{k:>40} {m:9.3f} {100 * m / b:6.1f}%")
    print(f"\ntarget: (b) < {TARGET_S:.0f} s: {'met' if b < TARGET_S else 'NOT met'} ({b:.3f}s median, "
          f"{min(full):.3f}s best); the page's own work beyond the forward: {100 * (paired - 1):.0f}% "
          f"(per-round median)", flush=True)

if __name__ == "__main__":
    main()
