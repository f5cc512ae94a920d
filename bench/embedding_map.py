"""Time of an embedding map (features + exact kNN + UMAP + clusters) of 5,000 synthetic tiles, cold and warm.

    python bench/embedding_map.py [--tiles 5000] [--tile-size 64] [--input-size 64]
                         [--checkpoint checkpoints/synthetic_false_encoder.safetensors] [--data-root DIR]

Measured side by side in one run, on the same data and checkpoint, the disk cache bypassed (use_cache=False):
  - cold: a fresh Python process (interpreter start, imports, numba compiling umap-learn's functions, features,
    UMAP, clusters), timed from the parent as the child's whole wall time. Target: under 60 s on 2 CPU cores.
  - warm: this process after ``core.analysis.embedding_map.warm_up()`` (what the app runs in a background thread at start).
    Target: under 20 s.
Each is printed as time / target (below 1 meets it). The synthetic set is generated first if it is not cached
(untimed). The two maps are compared: the same settings must give the same coordinates.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COLD_TARGET_S, WARM_TARGET_S = 60.0, 20.0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiles", type=int, default=5000)
    p.add_argument("--tile-size", type=int, default=64)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "synthetic_false_encoder.safetensors"))
    p.add_argument("--data-root", default=None, help="data root (default: $FALSE_WB_DATA or <repo>/data)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: the cold run, result file
    return p.parse_args(argv)


def embed(args: argparse.Namespace):
    from core.config import DataConfig
    from core.analysis.embeddings import compute_embedding

    data = DataConfig(name="synthetic", num_tiles=args.tiles, tile_size=args.tile_size, seed=0)
    t = time.perf_counter()
    emb = compute_embedding(args.checkpoint, data, args.tiles, input_size=args.input_size, use_cache=False)
    return emb, time.perf_counter() - t


def child(args: argparse.Namespace) -> None:
    """The cold run: everything from imports on happens here, in a process that has compiled nothing."""
    t = time.perf_counter()
    import umap  # noqa: F401 - timed: umap-learn, numba, pynndescent, scikit-learn

    import core.analysis.embeddings  # noqa: F401 - timed: torch, pandas, the engine
    imports = time.perf_counter() - t
    emb, total = embed(args)
    np.save(args.child + ".npy", emb.coords)
    Path(args.child).write_text(json.dumps({"imports": imports, "compute": total, "meta": emb.meta,
                                            "quality": emb.quality.headline()[:2]}))


def stage_rows(prefix: str, seconds: dict[str, float]) -> list[tuple[str, float]]:
    names = {"load": "data set + encoder", "features": "features", "umap": "kNN + UMAP",
             "quality": "k-means + quality"}
    return [(f"{prefix}{names.get(k, k)}", v) for k, v in seconds.items()]


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.data_root:
        os.environ["FALSE_WB_DATA"] = str(Path(args.data_root).resolve())
    if args.child:
        child(args)
        return
    from core.config import DataConfig
    from core.data import build_dataset, data_root

    t = time.perf_counter()
    build_dataset(DataConfig(name="synthetic", num_tiles=args.tiles, tile_size=args.tile_size, seed=0),
                  progress=True)
    print(f"data: {args.tiles} synthetic tiles of {args.tile_size} px under {data_root()} "
          f"(ready in {time.perf_counter() - t:.1f} s, untimed)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "cold.json"
        cmd = [sys.executable, __file__, "--child", str(result), "--tiles", str(args.tiles), "--tile-size",
               str(args.tile_size), "--input-size", str(args.input_size), "--checkpoint", args.checkpoint]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "FALSE_WB_DATA": str(data_root())})
        cold_wall = time.perf_counter() - t
        cold = json.loads(result.read_text())
        cold_coords = np.load(str(result) + ".npy")

    from core.analysis.embedding_map import warm_up

    t = time.perf_counter()
    warm_up()
    warm_up_s = time.perf_counter() - t
    emb, warm_total = embed(args)

    meta = emb.meta
    print(f"\nUMAP map of {args.tiles} tiles: {meta['encoder']} features at {args.input_size} px "
          f"({meta['precision']}, {meta['device']}), exact cosine kNN, UMAP n_epochs={meta['umap']['n_epochs']} "
          f"init={meta['umap']['init']} random_state={meta['umap']['random_state']}; torch threads "
          f"{__import__('torch').get_num_threads()}, {os.cpu_count()} CPUs\n")
    rows = [("cold: fresh process, total wall", cold_wall, COLD_TARGET_S),
            ("  interpreter start", cold_wall - cold["imports"] - cold["compute"], None),
            ("  imports", cold["imports"], None),
            *[(n, v, None) for n, v in stage_rows("  ", cold["meta"]["seconds"])],
            ("warm: after warm_up(), total", warm_total, WARM_TARGET_S),
            *[(n, v, None) for n, v in stage_rows("  ", meta["seconds"])],
            ("warm_up() itself (app start, background)", warm_up_s, None)]
    print(f"{'':44s}{'seconds':>9s}{'target':>8s}{'time/target':>13s}")
    for name, seconds, target in rows:
        ratio = f"{seconds / target:13.2f}" if target else ""
        print(f"{name:44s}{seconds:9.1f}{(f'{target:8.0f}' if target else ''):>8s}{ratio}")
    same = bool(np.array_equal(cold_coords, emb.coords))
    print(f"\nsame map cold and warm: {same}; {cold['quality'][0]} {cold['quality'][1]:.3f} (cold), "
          f"{emb.quality.headline()[1]:.3f} (warm)")


if __name__ == "__main__":
    main()
