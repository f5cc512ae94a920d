"""The engine's LARS (timm's ``Lars``) beside our former hand-written loop, side by side (issue 28, item 6).

    python bench/lars.py [--device cpu|cuda] [--encoder resnet18|resnet50] [--repeats 20]

Times one optimizer step of each on the same parameters and gradients, interleaving them round by round so that
machine noise hits them alike, and prints the median time and the ratio former / this (timm's per-tensor loop, the
engine's default on CPU, and timm's foreach path, its default on CUDA). It also prints how far one step of each moves
the weights apart: the trust ratios differ by design (the former, SimCLR's: eta ||w|| / ||g + wd w||; timm's, You et
al.: eta ||w|| / (||g|| + wd ||w||)), so the update differs unless weight decay is 0. This bench is why the engine
switched to timm (1.42-1.60x on CPU ResNet-50, 2026-12-04).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from core.ssl.lars import LARS
from core.ssl.models import build_encoder
from core.ssl.optim import param_groups


class FormerLars(torch.optim.Optimizer):
    """The engine's LARS until 2026-12-04, kept here only as the reference this bench times timm against."""

    def __init__(self, params, lr: float, momentum: float = 0.9, trust_coefficient: float = 0.001,
                 eps: float = 1e-8) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=0.0,
                                      trust_coefficient=trust_coefficient, eps=eps, lars=True))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - the torch.optim contract
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["lars"]:
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = group["trust_coefficient"] * w_norm / (g_norm + group["eps"])
                    g = g * torch.where((w_norm > 0) & (g_norm > 0), trust, torch.ones_like(trust))
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = g.clone()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])


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
    models = {name: with_grads(copy.deepcopy(base), 1) for name in ("former", "timm loop", "timm foreach")}
    opts = {
        "former": FormerLars(param_groups(models["former"], args.weight_decay), lr=0.3, momentum=0.9),
        "timm loop": LARS(param_groups(models["timm loop"], args.weight_decay), lr=0.3, momentum=0.9, foreach=False),
        "timm foreach": LARS(param_groups(models["timm foreach"], args.weight_decay), lr=0.3, momentum=0.9,
                             foreach=True),
    }
    for opt in opts.values():  # the first step makes the momentum buffers
        opt.step()
    first = {name: [p.detach().clone() for p in m.parameters()] for name, m in models.items()}
    moved = [(a - b).norm() / (b - w).norm().clamp_min(1e-30)
             for a, b, w in zip(first["timm loop"], first["former"], base.parameters()) if a.ndim > 1]
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
    ref = statistics.median(times["former"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:13s} {med * 1e3:8.2f} ms   former / this = {ref / med:5.2f}x")
    print(f"  one step's update, timm vs the former, weight decay {args.weight_decay:g}: median relative difference "
          f"{statistics.median(moved):.2e} over {len(moved)} matrices and kernels")
    return {"update_difference": statistics.median(moved), **{k: statistics.median(v) for k, v in times.items()}}


if __name__ == "__main__":
    main()
