"""In-domain scores of real images against every shipped model: does auto choose right, and who gets a warning?

    python bench/domain_scores.py [--data ../shared/data] [--markdown]

Reads the Dubai and DeepGlobe scenes that the shipped models' cards name as never seen and the NEON 10 cm
GeoTIFFs (no shipped model knows them); scores each against each shipped segmentation model (``core.seg.model_choice.score_for_model``, as ``--checkpoint auto`` does) and prints the score, the
in/out verdict and the model auto picks. Not a test: the data is not in the repository.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from core.store.catalog import segmentation_models
from core.imaging.imageio import read_image
from core.seg.model_choice import ModelCache, choose_model, score_for_model
from core.seg.nodata import nodata_mask

ROOT = Path(__file__).resolve().parent.parent


def held_out(model: str) -> list[str]:
    """The scenes a shipped model's card names as never seen (its evaluation's test scenes)."""
    card = json.loads((ROOT / "checkpoints" / f"{model}.json").read_text())
    return list((card.get("evaluation") or {}).get("scenes") or [])


def images(data: Path) -> list[tuple[str, Path]]:
    dubai = held_out("dubai_seg")
    tiles = sorted({s.split("/")[0] for s in dubai})
    out = [(f"Dubai {', '.join(tiles)}", data / "dubai_aerial" / "images" / f"{s}.jpg") for s in dubai]
    out += [("DeepGlobe test", data / "deepglobe_landcover" / f"{s}_sat.jpg") for s in held_out("deepglobe_seg")]
    out += [("NEON 10 cm", p) for p in sorted((data / "neon_unlabeled").glob("*.tif"))]
    return [(g, p) for g, p in out if p.is_file()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    entries = [e for e in segmentation_models() if e.label.startswith("shipped: ")]
    cache = ModelCache(size=len(entries) + 1)
    found = images(args.data)
    if not found:
        print(f"no images under {args.data}")
        return
    names = [e.label.removeprefix("shipped: ") for e in entries]
    print("| group | image | " + " | ".join(names) + " | auto picks | warning |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for group, path in found:
        loaded = read_image(path)
        nodata = nodata_mask(loaded)
        cells = []
        for e in entries:
            model, card = cache.load(e.path)
            d = score_for_model(loaded.rgb, nodata, loaded.pixel_size_m, model, card)
            cells.append("unknown" if d.score is None else f"{d.score:.3f} {'in' if d.in_domain else 'out'}")
        choice = choose_model(loaded.rgb, nodata, loaded.pixel_size_m, entries, cache)
        warn = "yes" if choice.domain.in_domain is False else "no"
        print(f"| {group} | {path.name} | " + " | ".join(cells)
              + f" | {choice.entry.label.removeprefix('shipped: ')} | {warn} |", flush=True)


if __name__ == "__main__":
    main()
