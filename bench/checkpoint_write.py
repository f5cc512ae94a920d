"""A training checkpoint written the engine's way (``write_safetensors``: streamed into the atomic temp file, its
sha256 read back) beside the former way (serialised to bytes, hashed, then written), side by side.

    python bench/checkpoint_write.py [--encoder resnet18|resnet50] [--repeats 5]

The checkpoint is what a fine-tuning run writes: a DeepLabV3+ model with its AdamW state. Both ways are timed on
the same snapshot, alternating round by round so that machine noise hits them alike; the figures are CPU seconds of
this process (the fsync's disk wait is not CPU) and wall seconds, medians over the rounds. Both files must have the
same tensors and metadata. Why: checkpoints were 10 % of the test suite's CPU (py-spy, 2026-12-05).
"""
from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from core.seg.segmodel import build_seg_model, make_card
from core.store.checkpoint import Snapshot, snapshot_checkpoint, write_safetensors
from core.store.runs import atomic_write_bytes


def former_write(path: Path, snap: Snapshot) -> str:
    """The engine's checkpoint write until 2026-12-05."""
    blob = save(snap.tensors, metadata=snap.metadata)
    digest = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(path, blob)
    return digest


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="resnet18", choices=["resnet18", "resnet50"])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    card = make_card(arch="deeplabv3plus", encoder=args.encoder,
                     classes=[{"name": str(i), "color": [i, i, i]} for i in range(6)])
    model = build_seg_model(card)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.rand(2, 3, 64, 64)).mean().backward()
    opt.step()
    snap = snapshot_checkpoint(model=model, card=card, optimizer=opt)
    size = sum(t.numel() * t.element_size() for t in snap.tensors.values()) / 2**20
    ways = {"former (bytes first)": former_write, "engine (streamed)": lambda path, s: write_safetensors(
        path, s.tensors, s.metadata)}
    cpu: dict[str, list[float]] = {k: [] for k in ways}
    wall: dict[str, list[float]] = {k: [] for k in ways}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for name, write in ways.items():
                path = Path(folder) / f"{name.split()[0]}.safetensors"
                c, w = _cpu(), time.perf_counter()
                digest = write(path, snap)
                cpu[name].append(_cpu() - c)
                wall[name].append(time.perf_counter() - w)
                assert digest == hashlib.sha256(path.read_bytes()).hexdigest(), name
        a, b = (load_file(str(Path(folder) / f"{n}.safetensors")) for n in ("former", "engine"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "the two files differ"
    print(f"checkpoint: DeepLabV3+ {args.encoder} with AdamW state, {size:.0f} MB, {args.repeats} rounds, "
          f"threads={torch.get_num_threads()}")
    for name in ways:
        print(f"{name:22s} CPU {statistics.median(cpu[name]):.3f} s   wall {statistics.median(wall[name]):.3f} s")
    former, engine = (statistics.median(cpu[n]) for n in ways)
    print(f"engine / former: CPU {engine / former:.2f}, "
          f"wall {statistics.median(wall[list(ways)[1]]) / statistics.median(wall[list(ways)[0]]):.2f}")
    return {"former_cpu_s": former, "engine_cpu_s": engine, "size_mb": size}


if __name__ == "__main__":
    main()
