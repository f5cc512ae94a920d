"""How good are a run's false-negative flags? Precision with intervals beside reference selectors, from the shell.

    python -m core.fn_report RUN [--json] [--no-encoder] [--refresh]

Rebuilds the batches the run trained on (from its seed, batch size and data set), scores FNSD's flags and the
reference selectors on them (:mod:`core.analysis.fn_quality` says what each one is), and prints the figures, or the JSON
report with ``--json`` (keys: ``precision``, ``precision_ci``, ``base_rate``, ``selectors``, ``recall``,
``cross_scene_precision``, ``pairs`` and more). The report is cached in the run folder as ``flag_quality.json``
and recomputed when the run's flags, encoder or data change. A problem (no labels, data set moved, FALSE off) is
one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..ssl.batch_order import BatchOrder
from ..config import ConfigError, PretrainConfig
from ..data import DataError, build_dataset
from ..imaging.bands import bands_of, preview_chw
from .fn_quality import colour_features, moco_candidates, score_flags, simclr_candidates
from .fn_scoring import NO_CLASS, base_rate, dominant_classes, load_pairs, run_config
from ..store.runs import NotARunError, Run, atomic_write_json, open_run, read_json_file

CACHE_NAME = "flag_quality.json"
REPORT_VERSION = 2  # 2: selectors' cross-scene picks are made among other scenes only
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class FlagReportError(ValueError):
    """The flags of this run cannot be scored; the message says why in one line."""


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return None


def cache_key(run: Run, cfg: PretrainConfig, use_encoder: bool) -> dict[str, Any]:
    """What the report depends on: the flags, the encoder, the data settings and this code's version."""
    return {"version": REPORT_VERSION, "fns": _stat(run.path / "fns.jsonl"), "use_encoder": use_encoder,
            "encoder": _stat(run.checkpoint_dir / "encoder.safetensors") if use_encoder else None,
            "data": data_dump(cfg.data), "seed": cfg.seed, "batch": cfg.train.batch_size}


def data_dump(data: Any) -> dict[str, Any]:
    """The data settings as a key: ``bands`` only when set, so reports cached before bands existed stay valid."""
    raw = data.model_dump(mode="json")
    if raw.get("bands") is None:
        raw.pop("bands", None)
    return raw


def cached_report(run: Run, use_encoder: bool = True) -> dict[str, Any] | None:
    """The stored report if it is still the run's (same flags, encoder and data), else None. Never raises."""
    try:
        cfg = run_config(run)
    except (ConfigError, ValueError):
        return None
    stored = read_json_file(run.path / CACHE_NAME)
    if stored and stored.get("key") == cache_key(run, cfg, use_encoder):
        return stored.get("report")
    return None


def _dataset(cfg: PretrainConfig) -> Any:
    try:
        return build_dataset(cfg.data, progress=False)
    except DataError as err:
        where = f" (data.root {cfg.data.root})" if cfg.data.root else ""
        raise FlagReportError(f"the run's data set{where} cannot be read: {err}; if it moved, point the run's "
                              "config.yaml data.root to its new place") from None


def _check_labels(cfg: PretrainConfig, dataset: Any) -> np.ndarray:
    classes = dominant_classes(dataset) if cfg.data.labeled else None
    if classes is None:
        raise FlagReportError(f"the run's data set ({cfg.data.name} {cfg.data.root or ''}) has no labels, so its flags "
                              "cannot be scored; pretrain on a labeled set (deepglobe, potsdam, vaihingen, loveda, "
                              "synthetic, or a folder with data.class_table)")
    if len(classes) and (classes == NO_CLASS).all():
        raise FlagReportError("no tile of the run's data set has a labeled pixel: the class table matches none of "
                              "the mask values, so no flag can be scored")
    return classes


def _check_same_tiles(run: Run, dataset: Any) -> None:
    record = read_json_file(run.path / "data.json") or {}
    tiles = record.get("tiles")
    if tiles is not None and int(tiles) != len(dataset):
        raise FlagReportError(f"the run trained on {tiles} tiles but its data set now gives {len(dataset)}: the data "
                              "or its split changed since the run, so its tile indices point at other tiles")


def _colour(dataset: Any, progress: Progress | None, chunk: int = 256) -> np.ndarray:
    out = []
    for start in range(0, len(dataset), chunk):
        idx = np.arange(start, min(start + chunk, len(dataset)))
        out.append(colour_features(preview_chw(dataset.get_images(idx).numpy(), bands_of(dataset))))
        if progress:
            progress("colour statistics", int(idx[-1]) + 1, len(dataset))
    return np.concatenate(out)


def _encoder(run: Run, cfg: PretrainConfig, dataset: Any, progress: Progress | None) -> np.ndarray | None:
    path = run.checkpoint_dir / "encoder.safetensors"
    if not path.is_file():
        return None
    from .embeddings import encoder_features, load_encoder  # torch models load only when asked

    enc = load_encoder(path)
    feats = encoder_features(enc, dataset, np.arange(len(dataset)), input_size=cfg.data.image_size,
                             progress=(lambda d, t: progress("encoder features", d, t)) if progress else None)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def compute_report(run: Run, use_encoder: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Score the run's flags and the reference selectors now; store and return the JSON report."""
    try:
        cfg = run_config(run)
    except ConfigError as err:
        raise FlagReportError(str(err)) from None
    if cfg.loss.name != "false":
        raise FlagReportError(f"FALSE was off in run {run.id} (loss: {cfg.loss.name}): no flags to score")
    key = cache_key(run, cfg, use_encoder)
    pairs = load_pairs(run)
    if pairs.empty:
        raise FlagReportError(f"run {run.id} has no flagged pairs (yet)")
    dataset = _dataset(cfg)
    classes = _check_labels(cfg, dataset)
    _check_same_tiles(run, dataset)
    status = run.status()
    last_step = int(max(int(status.get("step") or 0), int(pairs["step"].max())))
    world = int(status.get("world_size") or 1)
    order = BatchOrder(len(dataset), cfg.train.batch_size, cfg.seed, world)
    steps = moco_candidates(order, last_step, cfg.model.queue_size) if cfg.method == "moco" \
        else simclr_candidates(order, last_step)
    features = {"colour": (_colour(dataset, progress), "euclidean")}
    notes = []
    enc = _encoder(run, cfg, dataset, progress) if use_encoder else None
    if enc is not None:
        features["encoder"] = (enc, "cosine")
    elif use_encoder:
        notes.append("no encoder checkpoint yet: the encoder selector is left out")
    if progress:
        progress("rebuilding batches and scoring", 0, last_step)
    quality = score_flags(pairs, steps, classes, np.asarray(dataset.scene_ids), features, cfg.loss.selection,
                          base_rate(classes))
    if progress:
        progress("rebuilding batches and scoring", last_step, last_step)
    quality.notes.extend(notes)
    report = quality.to_json()
    report.update(run=run.id, method=cfg.method, data=cfg.data.name, step=last_step, world_size=world,
                  encoder_step=_encoder_step(run) if enc is not None else None)
    atomic_write_json(run.path / CACHE_NAME, {"key": key, "report": report})
    return report


def _encoder_step(run: Run) -> int | None:
    card = read_json_file(run.checkpoint_dir / "encoder.json") or {}
    step = card.get("step")
    return int(step) if isinstance(step, (int, float)) else None


def flag_report(run: Run, use_encoder: bool = True, refresh: bool = False,
                progress: Progress | None = None) -> dict[str, Any]:
    """The stored report when it is current, else a new one (see :func:`compute_report`)."""
    if not refresh:
        cached = cached_report(run, use_encoder)
        if cached is not None:
            return cached
    return compute_report(run, use_encoder, progress)


# ------------------------------------------------------------------------------------------------ text
SELECTOR_LABELS = {
    "fnsd": "FNSD flags",
    "random": "random negative (expected)",
    "colour": "colour-statistics nearest",
    "encoder": "encoder nearest (final encoder)",
    "oracle": "oracle ceiling (labels known)",
}


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry or not entry.get("pairs"):
        return "n/a"
    lo, hi = entry["ci"]
    return f"{entry['precision']:.3f}  [{lo:.3f}, {hi:.3f}]  n={entry['pairs']}"


def report_lines(r: dict[str, Any]) -> list[str]:
    """The report as the lines the CLI prints."""
    lines = [f"run {r.get('run')}: {r.get('method')} on {r.get('data')}, selection {r['selection']}, "
             f"{r['pairs_flagged']} flagged pairs over {r['steps_with_flags']} of {r['steps_rebuilt']} steps",
             "same dominant class, 95% Wilson interval, on the run's own batches:"]
    cross = r.get("cross_scene", {})
    for name, label in SELECTOR_LABELS.items():
        if name in r["selectors"]:
            x = f"   cross-scene {_fmt(cross.get(name))}" if name in cross else ""
            lines.append(f"  {label:<34} {_fmt(r['selectors'][name])}{x}")
    lines.append(f"  {'calibrated flags only':<34} {_fmt(r['calibrated'])}")
    lines.append(f"  {'same-scene flags only':<34} {_fmt(r['same_scene'])}")
    rec = r["recall_detail"]
    lines.append(f"base rate (two random tiles of the set): {r['base_rate']:.3f}; recall {rec['hits']:.0f} of "
                 f"{rec['pairs']} same-class pairs offered = {r['recall'] if r['recall'] is not None else float('nan'):.4f}")
    if r["excluded_unlabeled"] or r["tiles_without_class"]:
        lines.append(f"left out: {r['excluded_unlabeled']} pairs with a tile without labeled pixels "
                     f"({r['tiles_without_class']} such tiles)")
    if r["excluded_mirrored"]:
        lines.append(f"left out: {r['excluded_mirrored']} mirrored records (the same tile pair again)")
    lines += [f"note: {n}" for n in r.get("notes", [])]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.fn_report", description=__doc__.split("\n\n")[0])
    p.add_argument("run", metavar="RUN", help="a pretraining run folder (FALSE on a labeled data set)")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.add_argument("--no-encoder", action="store_true", help="leave out the encoder selector (no model is loaded)")
    p.add_argument("--refresh", action="store_true", help="recompute even if the stored report is current")
    args = p.parse_args(argv)
    try:
        run = open_run(args.run)
        from tqdm.auto import tqdm

        current: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if current.get("stage") != stage:  # one bar at a time, each stage in turn
                if current.get("bar") is not None:
                    current["bar"].close()
                current.update(stage=stage, bar=tqdm(total=total, desc=stage, file=sys.stderr, leave=False))
            current["bar"].n = done
            current["bar"].refresh()

        report = flag_report(run, use_encoder=not args.no_encoder, refresh=args.refresh, progress=progress)
        if current.get("bar") is not None:
            current["bar"].close()
    except (FlagReportError, NotARunError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(report_lines(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
