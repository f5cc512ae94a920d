"""Build a labeled folder of the Dubai tiles plus the DeepGlobe scenes relabelled into Dubai's classes.

    python scripts/dubai_with_deepglobe.py --out data/dubai_dg
    python -m core.finetune --config configs/finetune_dubai_cpu.yaml data.root=data/dubai_dg ...

Why: the Dubai model learns "vegetation" from tile 6's shallow-water plants and fails on the parks and trees of an
unseen tile; DeepGlobe's farmland and forest are green vegetation seen from above at a similar pixel size. Its
classes map onto Dubai's where they mean the same thing: water -> water, forest and agriculture -> vegetation,
barren -> land. Urban land (buildings and roads mixed), rangeland (neither Dubai's bare land nor its vegetation)
and unknown become unlabeled (ignored by the loss). The masks are written in Dubai's colours, so
``configs/classes/dubai.yaml`` reads both; files are copied, never linked (the folder reader refuses links that leave
its root). Nothing here is committed: the output is data.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DUBAI = {"land": (132, 41, 246), "vegetation": (254, 221, 58), "water": (226, 169, 41)}
DEEPGLOBE_TO_DUBAI = {(0, 0, 255): "water", (0, 255, 0): "vegetation", (255, 255, 0): "vegetation",
                      (255, 255, 255): "land"}  # urban (0,255,255), rangeland (255,0,255), unknown (0,0,0): ignored


def relabel(mask_path: Path) -> tuple[np.ndarray, dict[str, float]]:
    """A DeepGlobe colour mask (channels on/off at 128, as its scorer reads them) in Dubai's colours; black = ignored."""
    on = (np.asarray(Image.open(mask_path).convert("RGB")) >= 128).astype(np.uint8) * 255
    out = np.zeros_like(on)
    for colour, name in DEEPGLOBE_TO_DUBAI.items():
        out[(on == np.array(colour, np.uint8)).all(-1)] = DUBAI[name]
    shares = {n: float((out == np.array(c, np.uint8)).all(-1).mean()) for n, c in DUBAI.items()}
    return out, shares


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the new folder (images/, masks/)")
    p.add_argument("--dubai", default=str(ROOT.parent / "shared/data/dubai_aerial"))
    p.add_argument("--deepglobe", default=str(ROOT.parent / "shared/data/deepglobe_landcover/train"))
    args = p.parse_args(argv)
    out, dubai, deepglobe = Path(args.out), Path(args.dubai), Path(args.deepglobe)
    if not (dubai / "images").is_dir() or not deepglobe.is_dir():
        print(f"error: need {dubai}/images and {deepglobe}", flush=True)
        return 2
    for part in ("images", "masks"):
        for tile in sorted((dubai / part).iterdir()):
            shutil.copytree(tile, out / part / tile.name, dirs_exist_ok=True)
    (out / "images/deepglobe").mkdir(parents=True, exist_ok=True)
    (out / "masks/deepglobe").mkdir(parents=True, exist_ok=True)
    for mask in sorted(deepglobe.glob("*_mask.png")):
        scene = mask.name[: -len("_mask.png")]
        pixels, shares = relabel(mask)
        Image.fromarray(pixels).save(out / "masks/deepglobe" / f"{scene}.png")
        shutil.copyfile(deepglobe / f"{scene}_sat.jpg", out / "images/deepglobe" / f"{scene}.jpg")
        print(f"{scene}: " + ", ".join(f"{n} {100 * v:.1f} %" for n, v in shares.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
