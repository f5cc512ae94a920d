"""Our LARS beside timm's ``Lars``, side by side on one model's parameters (issue 28, item 6).

    python bench/lars.py [--device cpu|cuda] [--encoder resnet18|resnet50] [--repeats 20]

Times one optimizer step of each on the same parameters and gradients, interleaving the two round by round so that
machine noise hits them alike, and prints the median time and the ratio ours / timm's (per-tensor loop and timm's
foreach path). It also prints how far one step of each moves the weights apart: the two trust ratios differ by
design (ours, SimCLR's: eta ||w|| / ||g + wd w||; timm's, You et al.: eta ||w|| / (||g|| + wd ||w||)), so the
update differs unless weight decay is 0. Keep ours only if it is the faster; either way the docstring names its
formula.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from timm.optim import Lars

from core.ssl.models import build_encoder
from core.ssl.optim import LARS, param_groups


def timm_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The same split as ours: weight decay and adaptation for matrices and kernels only. timm adapts a group only
    where its weight decay is non-zero unless always_adapt: without it, weight decay 0 would be plain SGD."""
    return [{**{k: v for k, v in g.items() if k != "lars"}, "always_adapt": g["lars"]}
            for g in param_groups(model, weight_decay)]


def with_grads(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = (torch.randn(p.shape, generator=g) * 1e-3).to(p.device)
    return model


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--weight-decay", type=float, default=1e-6)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    base = build_encoder(args.encoder).to(args.device)
    models = {name: with_grads(copy.deepcopy(base), 1) for name in ("ours", "timm loop", "timm foreach")}
    opts = {
        "ours": LARS(param_groups(models["ours"], args.weight_decay), lr=0.3, momentum=0.9),
        "timm loop": Lars(timm_groups(models["timm loop"], args.weight_decay), lr=0.3, momentum=0.9, foreach=False),
        "timm foreach": Lars(timm_groups(models["timm foreach"], args.weight_decay), lr=0.3, momentum=0.9,
                             foreach=True),
    }
    for opt in opts.values():  # the first step makes the momentum buffers
        opt.step()
    first = {name: [p.detach().clone() for p in m.parameters()] for name, m in models.items()}
    moved = [(a - b).norm() / (b - w).norm().clamp_min(1e-30)
             for a, b, w in zip(first["timm loop"], first["ours"], base.parameters()) if a.ndim > 1]
    moved = [float(m.detach()) for m in moved]
    times: dict[str, list[float]] = {name: [] for name in opts}
    for _ in range(args.repeats):
        for name, opt in opts.items():
            sync(args.device)
            t0 = time.perf_counter()
            opt.step()
            sync(args.device)
            times[name].append(time.perf_counter() - t0)
    load = open("/proc/loadavg").read().split()[:3] if args.device == "cpu" else ["n/a"]
    n = sum(p.numel() for p in base.parameters())
    print(f"LARS step, {args.encoder} ({n / 1e6:.1f} M parameters, {len(list(base.parameters()))} tensors), "
          f"{args.device}, median of {args.repeats} (load before: {' '.join(load)})")
    ref = statistics.median(times["ours"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:13s} {med * 1e3:8.2f} ms   ours / this = {ref / med:5.2f}x")
    print(f"  one step's update, timm vs ours, weight decay {args.weight_decay:g}: median relative difference "
          f"{statistics.median(moved):.2e} over {len(moved)} matrices and kernels")
    return {"update_difference": statistics.median(moved), **{k: statistics.median(v) for k, v in times.items()}}


if __name__ == "__main__":
    main()
