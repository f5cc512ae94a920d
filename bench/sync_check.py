"""Does a training step between logged steps make the host wait for the GPU? CUDA itself answers (issue 28, item 1).

    python bench/sync_check.py [--config configs/demo_cpu.yaml] [--steps 6] [--json PATH] [key=value ...]

Runs two warm-up steps of the real trainer, then ``--steps`` more under ``torch.cuda.set_sync_debug_mode("error")``,
which raises at the first operation that synchronises the host with the GPU (a value read back, a blocking copy, a
data-dependent size). The steps are not logged steps, so none may wait. The CPU suite proves the same by counting
reads (tests/test_host_sync.py); this is the check on the hardware. Without CUDA it says so and passes nothing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from core.config import load_config
from core.ssl.compiled import why
from core.ssl.pretrain import Trainer

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/demo_cpu.yaml"))
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--json")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    out: dict = {"steps": args.steps, "overrides": args.overrides}
    if not torch.cuda.is_available():
        out.update(result="skipped", detail="no CUDA GPU: the sync check needs one (the CPU suite counts reads)")
    else:
        cfg = load_config(args.config, ["train.max_steps=100000", "train.log_every=100000", *args.overrides])
        trainer = Trainer(cfg, None, progress=False)
        trainer.model.train()
        for step in range(2):  # allocations, cuDNN's choices, the constants cached on the device
            trainer.train_step(step)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for step in range(2, 2 + args.steps):
                trainer.train_step(step)
            out.update(result="no synchronisation", detail="")
        except RuntimeError as error:
            out.update(result="synchronised", detail=why(error))
        finally:
            torch.cuda.set_sync_debug_mode(0)
        trainer.records.drain()
    print(f"sync check ({args.steps} steps, {' '.join(args.overrides) or 'preset'}): {out['result']}"
          + (f" ({out['detail']})" if out["detail"] else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
