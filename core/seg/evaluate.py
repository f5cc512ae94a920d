"""Score a segmentation checkpoint on the held-out scenes its card names, as the card's figures were made.

    python -m core.evaluate CHECKPOINT [--split test] [--data-root DIR] [--config FINETUNE.yaml] [--tta]
                            [--json] [--write-card]

Why: a model card's quality figures must come from scenes the model never saw and be reproducible by anyone with
the data. The card's training config rebuilds the same scene split (``data.test_scenes`` or the seeded split);
every scene of ``--split`` is segmented whole by ``core.seg.infer.predict`` (the windows of ``core.seg.segment``) and
compared with its labels, each pixel once. The scene names are printed with the scores. ``--write-card`` stores
the result as the card's ``evaluation`` (with the command that reproduces it), in the file and its ``.json``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..cli_args import evaluate_parser
from ..console import say
from ..store.checkpoint import CheckpointError
from .lineage import seen_in_pretraining, unseen_words
from .scene_role import scored_scenes_text
from .metrics import iou_lines, scores_text
from ..config import ConfigError
from ..data import DataError
from ..device import pick_device


SHOW_SCENES = 12  # scene names printed; --json gives them all
VAL_NOTE = ("note: validation scenes are not trained on but are watched during fine-tuning, so this is no unseen "
            "score; the card's validation figure was measured on tiles, this one on whole scenes")


def evaluate_checkpoint(path: Path, split: str = "test", data_root: str | None = None,
                        config: Path | None = None, progress: bool = True, tta: bool = False) -> dict[str, Any]:
    """Whole-scene scores of a checkpoint on one split of the data its card (or ``config``) names."""
    from tqdm import tqdm

    from ..data.labeled import build_seg_splits
    from .fingerprint import training_config, with_data_root
    from .scene_eval import DEFAULT_OVERLAP, DEFAULT_TILE, evaluate_scenes
    from .segmodel import load_seg_model

    device = pick_device("auto")
    model, card = load_seg_model(path, device=device)
    cfg = with_data_root(training_config(card, path, config), data_root)
    splits = build_seg_splits(cfg.data, progress=progress)
    part = getattr(splits, split)
    if len(part) == 0:
        why = (": the model trained with no validation images (data.val_fraction 0, no val_scenes); its test split "
               "holds the scenes it was not trained on" if split == "val" and not cfg.data.val_fraction
               and not cfg.data.val_scenes else "")
        raise DataError(f"the {split} split of {splits.name} is empty{why}")
    names = [c["name"] for c in splits.classes]
    bar = tqdm(total=None, desc=f"{split} scenes", unit="scene", disable=not progress or None)  # none in a pipe

    def tick(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    how = evaluate_scenes(model, part, len(names), splits.ignore_index, device=device, tile=DEFAULT_TILE,
                          overlap=DEFAULT_OVERLAP, card=card, progress=tick, tta_flip=tta)
    bar.close()
    scores = how.scores.as_dict(names)
    files = splits.dataset.scene_files() if hasattr(splits.dataset, "scene_files") else {}
    return {"split": split, "data": cfg.data.name, "scenes": how.scenes, "pixels": how.pixels,
            "not_the_cards": not_the_cards(card, split, list(how.scenes), files),
            "training_scenes": splits.scenes.get("train", []), "classes": names,
            "seen_in_pretraining": seen_in_pretraining(card, list(how.scenes)),  # None: the card does not say
            "miou": scores["miou"], "oa": scores["oa"], "kappa": scores["kappa"], "iou": scores["iou"],
            "confusion": scores.get("confusion"),
            "method": f"{how.method}{', flip TTA' if how.tta else ''}, window {how.tile}, overlap {how.overlap}"}


def not_the_cards(card: dict[str, Any], split: str, scenes: list[str], files: dict[str, Path]) -> str | None:
    """Why a test score is not the card's figure, though of its model and split: scenes the card scored that this
    data lacks, scenes it did not score, files that are not those its digests name (a review scored 6 of tile 3's 9
    images at half size, 48.3 % against the card's 53.1 %, with no word)."""
    from ..store.file_versions import file_sha256

    theirs = [str(n) for n in (card.get("evaluation") or {}).get("scenes") or []]
    if split != "test" or not theirs:
        return None
    digests = (card.get("domain") or {}).get("scene_digests") or {}
    missing, extra = [n for n in theirs if n not in scenes], [n for n in scenes if n not in theirs]
    changed = [n for n in scenes if n in digests and n in files and file_sha256(files[n]) != digests[n]]
    parts = [f"{len(found)} {what} ({', '.join(found[:3])}{' ...' if len(found) > 3 else ''})"
             for found, what in ((missing, f"of the card's {len(theirs)} test scenes are not in this data"),
                                 (extra, "scenes the card did not score"),
                                 (changed, "scene files are not the ones the card was scored on (their sha256 "
                                           "differs)")) if found]
    return ("note: not the card's figure: " + "; ".join(parts)) if parts else None


def _reproduce(path: Path, split: str) -> str:
    return f"python -m core.evaluate {path.as_posix()} --split {split} [--data-root DIR]"


def _named_scenes(path: Path, split: str) -> tuple[list[str], str | None]:
    """The scenes the card's config names for ``split`` (Dubai's test scene tile_3 is a folder of 9 images), and the
    unit its image folder was split by."""
    from ..store.checkpoint import read_metadata

    try:
        data = (read_metadata(path)["card"].get("config") or {}).get("data") or {}
    except (CheckpointError, OSError, ValueError, AttributeError):
        return [], None
    named = data.get(f"{split}_scenes") if isinstance(data, dict) else None
    unit = data.get("split_unit") if isinstance(data, dict) else None
    return ([str(n) for n in named] if isinstance(named, list) else []), (str(unit) if unit else None)


def main(argv: list[str] | None = None) -> int:
    args = evaluate_parser().parse_args(argv)
    if args.tta and args.write_card:  # the card's figures are what the app and core.segment give by default
        print("error: --write-card stores the card's figures, which are without --tta (as the app segments); "
              "score with --tta apart", file=sys.stderr)
        return 2
    from ..store.catalog import named_checkpoint

    args.checkpoint = named_checkpoint(args.checkpoint)
    try:
        res = evaluate_checkpoint(args.checkpoint, args.split, args.data_root, args.config, not args.no_progress,
                                  args.tta)
        if args.write_card and res.get("not_the_cards"):  # the card's figure is of its own scenes and files
            raise ValueError(f"--write-card: {res['not_the_cards'].removeprefix('note: ')}; the card keeps its figure "
                             "(score these apart, without --write-card)")
        if args.write_card:
            from ..store.checkpoint import read_metadata
            from .fingerprint import rewrite_card

            card = read_metadata(args.checkpoint)["card"]
            card["evaluation"] = {k: v for k, v in res.items() if k not in ("confusion", "not_the_cards")} | {
                "command": _reproduce(args.checkpoint, args.split), "confusion": res["confusion"]}
            rewrite_card(args.checkpoint, card)
    except (CheckpointError, ConfigError, DataError, FileNotFoundError, ValueError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if args.json:
        say(json.dumps(res, indent=1))
        return 0
    scenes = ", ".join(res["scenes"][:SHOW_SCENES]) + (f" and {len(res['scenes']) - SHOW_SCENES} more (--json lists "
                                                      "them all)" if len(res["scenes"]) > SHOW_SCENES else "")
    named, unit = _named_scenes(args.checkpoint, res["split"])
    count = scored_scenes_text(res["scenes"], named, unit=unit)  # 9 images of 1 scene
    if res["split"] == "test":
        words, note = unseen_words(res["seen_in_pretraining"], len(res["scenes"]))
        what = f"{count}, {words.replace('scenes', 'which', 1)}"
    else:
        what, note = f"{count}, watched as validation", VAL_NOTE
    say(f"{args.checkpoint} on the {res['split']} split of {res['data']} ({what}: {scenes}; {res['pixels']:,} "
        f"labeled pixels; {res['method']})")
    for line in (note, res.get("not_the_cards")):
        if line:
            say(line)
    say(scores_text(res["miou"], res["oa"], res["kappa"]))
    say("\n".join(iou_lines(res["iou"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
