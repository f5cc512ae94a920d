"""Print the shipped segmentation models' cards as Markdown (what checkpoints/README.md shows), from the cards only.

    python scripts/model_table.py

Why: the README's figures must be the cards' figures, and the cards' come from ``core.seg.evaluate --write-card`` on
the shipped file; copying numbers by hand is how a card and its README drift apart.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.seg.scene_role import scored_scenes_text

ROOT = Path(__file__).resolve().parent.parent


def pct(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.1f} %"


def _training(card: dict, n: object) -> str:
    """The training data as the test data is said: images of scenes where a scene is a folder of images (Dubai's
    tiles), else scenes."""
    ev = card.get("evaluation") or {}
    names = [str(s) for s in ev.get("training_scenes") or []]
    tested = ((card.get("config") or {}).get("data") or {}).get("test_scenes") or []
    if names and any(f"{t}/" in str(s) for t in tested for s in ev.get("scenes") or []):
        return scored_scenes_text(names, sorted({s.split("/")[0] for s in names if "/" in s}))
    return f"{n} scenes"


def _scored_words(ev: dict) -> str:
    """"never saw in any stage" only for test scenes that the encoder's pretraining did not read either."""
    if ev["split"] != "test":
        return f"{ev['split']} data (watched during fine-tuning, not trained on)"
    seen = ev.get("seen_in_pretraining")
    if seen == []:
        return "test data it never saw in any stage"
    return ("test data fine-tuning never saw (" + (f"its encoder had read {len(seen)} of them before"
            if seen else "what its encoder was pretrained on is not recorded") + ")")


def describe(path: Path) -> str:
    card = json.loads(path.read_text())
    d = card.get("domain") or {}
    ev = card.get("evaluation") or {}
    lines = [f"### `{path.with_suffix('.safetensors').name}`", ""]
    lines.append(f"- domain: {d.get('platform') or 'unknown platform'}; pixel size "
                 f"{str(d.get('gsd_m')) + ' m' if d.get('gsd_m') else 'not published'}; region {d.get('region')}")
    lines.append(f"- classes: {', '.join(c['name'] for c in card['classes'])}")
    train_n, val = d.get("training_scenes"), d.get("validation_scenes") or []
    val_n = f"{len(val)} validation scene{'s' if len(val) != 1 else ''}"
    chosen = (f"checkpoint chosen on {val_n}" if not str(card.get("selection", "")).startswith(
        "mean of the weights") else f"the model is the {card['selection']} " + (
        f"({val_n} watched, not used to choose)" if val else "(no validation scenes)"))
    lines.append(f"- trained on {_training(card, train_n)}, {chosen}; domain "
                 f"fingerprint from {(d.get('fingerprint') or {}).get('note', 'none')}")
    if ev:
        scenes = ev["scenes"]
        shown = ", ".join(scenes[:9]) + (f" and {len(scenes) - 9} more" if len(scenes) > 9 else "")
        count = scored_scenes_text(scenes, ((card.get("config") or {}).get("data") or {}).get("test_scenes"))
        lines.append(f"- **{_scored_words(ev)}**: {count}: {shown}")
        lines.append(f"- on them: mIoU **{pct(ev['miou'])}**, OA {pct(ev['oa'])}, kappa {ev['kappa']:.3f} "
                     f"({ev['method']}, {ev['pixels']:,} labeled pixels)")
        lines.append("- IoU per class: " + ", ".join(f"{k} {pct(v)}" for k, v in ev["iou"].items()))
        lines.append(f"- reproduce: `{ev['command']}`")
    else:
        lines.append("- no held-out evaluation in the card")
    lines.append(f"- made by: `{card.get('command', '?')}`")
    return "\n".join(lines)


def main() -> None:
    for path in sorted((ROOT / "checkpoints").glob("*.json")):
        card = json.loads(path.read_text())
        if card.get("kind") == "segmentation":
            print(describe(path) + "\n")


if __name__ == "__main__":
    main()
