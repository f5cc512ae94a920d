"""Peak GPU memory of a contrastive step, and the largest batch that fits (issue 28, item 7).

    python bench/max_batch.py [--encoder resnet50] [--size 224] [--batch 256] [--limit 8192] [--json PATH]

One SimCLR + FALSE step (forward of both views, loss, backward, LARS) in bf16 with channels_last on random views of
``--size`` px: the peak ``torch.cuda.max_memory_allocated`` at ``--batch`` images, then the batch doubled until a step
runs out of memory (or reaches ``--limit``) and bisected to the nearest 32 images. Random views, not the data set: the
memory of a step does not depend on what the pixels show, and no data set of thousands of tiles is needed.
"""
from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

import torch

from core.config import load_config
from core.ssl.methods import method_step
from core.ssl.models import build_pretrain_model
from core.ssl.optim import build_optimizer


def peak_gib(encoder: str, size: int, batch: int) -> float | None:
    """Peak GiB of one step at ``batch`` images (two views each), or None when it does not fit."""
    cfg = load_config(None, ["train.max_steps=1", f"model.encoder={encoder}", f"train.batch_size={batch}"])
    model = opt = views = None
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model = build_pretrain_model("simclr", cfg.model).cuda().to(memory_format=torch.channels_last).train()
        opt = build_optimizer("lars", model, 0.3, 1e-6, 0.9)
        method = method_step(cfg, model, model)
        views = torch.randn(2 * batch, 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
        ids = torch.arange(batch, device="cuda").repeat(2)
        for _ in range(2):  # the second step holds the optimizer's state too
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = method.loss(views, ids, False).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2 ** 30
    except torch.OutOfMemoryError:
        return None
    finally:
        del model, opt, views
        gc.collect()
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--limit", type=int, default=8192)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        out = {"result": "skipped", "detail": "no CUDA GPU"}
        print("max batch: no CUDA GPU, skipped")
    else:
        at = peak_gib(args.encoder, args.size, args.batch)
        fits, fails = (args.batch, None) if at is not None else (0, args.batch)
        while fails is None and fits < args.limit:
            nxt = min(fits * 2, args.limit)
            fits, fails = (nxt, None) if peak_gib(args.encoder, args.size, nxt) is not None else (fits, nxt)
        while fails is not None and fails - fits > 32:
            mid = (fits + fails) // 2 // 32 * 32
            fits, fails = (mid, fails) if peak_gib(args.encoder, args.size, mid) is not None else (fits, mid)
        total = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
        out = {"encoder": args.encoder, "size": args.size, "batch": args.batch, "peak_gib": at,
               "largest_batch": fits, "capped_at_limit": fails is None, "device_gib": total}
        print(f"{args.encoder} {args.size}px bf16: peak {at if at is None else round(at, 1)} GiB at batch "
              f"{args.batch}; largest batch that fits: {fits}{' (the limit)' if fails is None else ''} "
              f"of {total:.0f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
