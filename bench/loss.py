"""Loss cost, side by side: plain cross-entropy NT-Xent vs info_nce vs false_loss (both selections).

    python bench/loss.py [--device cpu|cuda] [--sizes 256 512 1024] [--repeats 30] [--dtype fp32|bf16]
                         [--compile] [--json PATH]

Times forward + backward of each loss on the same random projections, interleaving the candidates round by round
so that machine noise hits them alike, and prints the median time and its ratio to the NT-Xent baseline. The losses
are called as the trainer calls them (no id check: no host read). ``--compile`` adds each loss compiled
(``torch.compile``, as ``train.compile`` does), NT-Xent too, so compiled FALSE is read against compiled NT-Xent.
Targets: false_loss at M = 512 on the CPU at most 1.3x NT-Xent (issue 2); on a GPU in bf16 at M = 512, 1024, 4096
(issue 28).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from core.ssl.losses import false_loss, info_nce


def ntxent_cross_entropy(h: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """The textbook NT-Xent: views i and i + N are positives; rows in that fixed order."""
    z = F.normalize(h.float(), dim=1)
    m = z.shape[0]
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(m, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.arange(m, device=z.device).roll(m // 2)
    return F.cross_entropy(logits, target)


def candidates(ids: torch.Tensor, compile_too: bool = False) -> dict:
    eager = {
        "ntxent_ce": lambda h: ntxent_cross_entropy(h),
        "info_nce": lambda h: info_nce(h, ids, check_ids=False)[0],
        "false_global": lambda h: false_loss(h, ids, selection="global", check_ids=False)[0],
        "false_per_anchor": lambda h: false_loss(h, ids, selection="per_anchor", topk=1, check_ids=False)[0],
    }
    if not compile_too:
        return eager
    return {**eager, **{f"{k}+compile": torch.compile(fn, dynamic=False) for k, fn in eager.items()}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_size(m: int, device: torch.device, dtype: torch.dtype, repeats: int, dim: int = 128,
               compile_too: bool = False) -> dict[str, float]:
    torch.manual_seed(0)
    ids = torch.arange(m // 2, device=device).repeat(2)
    base = torch.randn(m, dim, device=device)
    h = base.to(dtype).requires_grad_(True)
    fns = candidates(ids, compile_too)
    times: dict[str, list[float]] = {k: [] for k in fns}
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    for r in range(repeats + 5):  # 5 warm-up rounds
        for name, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            with autocast:
                loss = fn(h)
            loss.backward()
            h.grad = None
            sync(device)
            if r >= 5:
                times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="also time every loss compiled")
    p.add_argument("--json", help="write the medians and ratios here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} repeats={args.repeats}")
    print(f"{'M':>6} {'loss':>26} {'median ms':>10} {'x NT-Xent':>10}")
    rows, worst = [], {}
    for m in args.sizes:
        res = bench_size(m, device, dtype, args.repeats, compile_too=args.compile)
        for name, t in res.items():
            base = res["ntxent_ce+compile"] if name.endswith("+compile") else res["ntxent_ce"]
            ratio = t / base
            rows.append({"m": m, "loss": name, "ms": t * 1e3, "x_ntxent": ratio})
            print(f"{m:>6} {name:>26} {t * 1e3:>10.3f} {ratio:>10.2f}")
            if m == 512 and name.startswith("false"):
                worst[name] = ratio
    if worst:
        ok = all(r <= 1.3 for r in worst.values())
        print(f"target M=512 false_loss <= 1.3x NT-Xent: {'MET' if ok else 'NOT MET'} "
              + ", ".join(f"{k}={v:.2f}x" for k, v in worst.items()))
    out = {"device": str(device), "dtype": args.dtype, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
