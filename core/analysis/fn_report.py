"""How good are a run's false-negative flags? Precision with intervals beside reference selectors, from the shell.

    python -m core.fn_report RUN [--json] [--no-encoder] [--refresh]

Rebuilds the batches the run trained on (from its seed, batch size and data set), scores the flags of the run's
detector (``loss.detector``: FALSE's FNSD, ``nearest``, ``support`` or the ``oracle``) and the reference selectors
on them (:mod:`core.analysis.fn_quality` says what each one is), and prints the figures, or the JSON report with
``--json`` (keys: ``precision``, ``precision_ci``, ``base_rate``, ``selectors`` (the run's own flags under
``flags``), ``recall``, ``cross_scene_precision``, ``pairs``, ``detector`` (its name, treatment, label and whether
it reads labels) and more). An oracle run's flags read the labels: its precision is 100 % by construction, the
ceiling, not a method; the report says so. The report is cached in the run folder as ``flag_quality.json`` and
recomputed when the run's flags, encoder or data change. A problem (no labels, data set moved, no detector) is one
line on stderr and exit code 2.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..ssl.batch_order import BatchOrder
from ..ssl.registry import get_method
from ..config import ConfigError, PretrainConfig
from ..config.strategy import strategy_label, uses_labels
from ..data import DataError, build_dataset
from ..data.seg_subset import place_ids
from .fn_quality import entry_text, score_flags
from .tile_colours import COLOUR_METRIC, tile_colours
from .proportions import REFERENCES, margin, margin_text, recall_text
from .fn_units import moco_candidates, simclr_candidates
from .fn_scoring import NO_CLASS, base_rate, dominant_classes, last_step_of, load_pairs, run_config
from ..store.runs import Run, atomic_write_json, read_json_file

CACHE_NAME = "flag_quality.json"
REPORT_VERSION = 8  # 2: cross-scene among other scenes; 3: any detector; 5: picks or tile pairs once per step;
# 6: figures kept to 6 decimals (printed at 3, a bound kept at 4 was rounded twice); 7: intervals over the effective
# number of distinct tile pairs, random and the oracle exact (core.analysis.proportions); 8: cross-scene by place
# (``core.data.seg_subset.place_ids``: a Dubai tile's parts are one place)
PARTIAL = "partial"  # the cache's slot for a report over the first steps only (a comparison's shared steps)
LIGHT = "without_encoder"  # the slot of a report made without the encoder (--no-encoder): never replaces the full one
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class FlagReportError(ValueError):
    """The flags of this run cannot be scored; the message says why in one line."""


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return None


def cache_key(run: Run, cfg: PretrainConfig, use_encoder: bool, up_to: int | None = None) -> dict[str, Any]:
    """What the report depends on: the flags, the encoder, the data settings, the detector, this code's version
    and, for a report of the first steps only, their number."""
    key = {"version": REPORT_VERSION, "fns": _stat(run.path / "fns.jsonl"), "use_encoder": use_encoder,
           "encoder": _stat(run.checkpoint_dir / "encoder.safetensors") if use_encoder else None,
           "data": data_dump(cfg.data), "seed": cfg.seed, "batch": cfg.train.batch_size,
           "loss": cfg.loss.model_dump(mode="json")}
    if up_to is not None:
        key["up_to"] = int(up_to)
    if run.is_live():  # a report read while training is made again once the run ends, its flags' file unchanged
        key["live"] = True
    return key


def data_dump(data: Any) -> dict[str, Any]:
    """The data settings as a key: ``bands`` and ``split_unit`` only when set, so reports cached before they existed
    stay valid."""
    raw = data.model_dump(mode="json")
    for late in ("bands", "split_unit"):
        if raw.get(late) is None:
            raw.pop(late, None)
    return raw


def cached_report(run: Run, use_encoder: bool = True, up_to: int | None = None) -> dict[str, Any] | None:
    """The stored report if it is still the run's (same flags, encoder and data), else None. Never raises.
    ``up_to``: the report of steps 1..up_to only (kept beside the whole run's)."""
    try:
        cfg = run_config(run)
    except (ConfigError, ValueError):
        return None
    stored = read_json_file(run.path / CACHE_NAME) or {}
    entry = stored.get(PARTIAL) if up_to is not None else stored if use_encoder else stored.get(LIGHT)
    if isinstance(entry, dict) and entry.get("key") == cache_key(run, cfg, use_encoder, up_to):
        return entry.get("report")
    return None


def _store(run: Run, key: dict[str, Any], report: dict[str, Any], partial: bool) -> None:
    """Write the report into its slot of ``flag_quality.json`` (the whole run's with the encoder at the top, a
    partial one, one made without the encoder), keeping the other slots when they are of this version: a lighter
    ``--no-encoder`` report once replaced the page's full one, which then had to be made again."""
    stored = read_json_file(run.path / CACHE_NAME) or {}

    def current(entry: Any) -> bool:
        return isinstance(entry, dict) and isinstance(entry.get("key"), dict) and \
            entry["key"].get("version") == REPORT_VERSION

    kept: dict[str, Any] = {}
    if current(stored) and stored["key"].get("use_encoder", True):
        kept.update(key=stored["key"], report=stored.get("report"))
    kept.update({slot: stored[slot] for slot in (PARTIAL, LIGHT) if current(stored.get(slot))})
    if partial:
        kept[PARTIAL] = {"key": key, "report": report}
    elif not key.get("use_encoder", True):
        kept[LIGHT] = {"key": key, "report": report}
    else:
        kept.update(key=key, report=report)
    atomic_write_json(run.path / CACHE_NAME, kept)


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


def _check_same_tiles(run: Run, dataset: Any, unit: str | None = None) -> None:
    from ..ssl.run_start import check_same_data

    try:
        check_same_data(run.path, dataset, unit)
    except DataError as err:
        raise FlagReportError(str(err)) from None


def _encoder(run: Run, cfg: PretrainConfig, dataset: Any, progress: Progress | None) -> np.ndarray | None:
    path = run.checkpoint_dir / "encoder.safetensors"
    if not path.is_file():
        return None
    from .embeddings import encoder_features, load_encoder  # torch models load only when asked

    enc = load_encoder(path)
    feats = encoder_features(enc, dataset, np.arange(len(dataset)), input_size=cfg.data.image_size,
                             progress=(lambda d, t: progress("encoder features", d, t)) if progress else None)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def detector_of(cfg: PretrainConfig) -> dict[str, Any]:
    """The report's ``detector``: the run's detector and treatment, its label (as the Runs table prints it) and
    whether it reads labels (the oracle: the ceiling, not a method)."""
    loss = cfg.loss.model_dump(mode="json")
    name = str(cfg.loss.detector)
    return {"name": name, "treatment": str(cfg.loss.treatment), "label": strategy_label(loss),
            "uses_labels": uses_labels(loss), "flags": flags_label(name)}


def selection_of(cfg: PretrainConfig) -> str:
    """How the detector picked its flags: FNSD by ``loss.selection``; nearest, support and the oracle per anchor."""
    return str(cfg.loss.selection) if cfg.loss.detector == "fnsd" else "per_anchor"


def picks_ordered(cfg: PretrainConfig) -> bool:
    """Whether a run's flags are counted as an anchor's picks (per-anchor selection, MoCo) or as tile pairs."""
    return selection_of(cfg) != "global" or bool(get_method(cfg.method).queue)


def no_detector_reason(run: Run, cfg: PretrainConfig) -> str | None:
    """Why a run has no flags to score by construction (InfoNCE, DCL), else None."""
    if cfg.loss.name == "dcl":
        return (f"run {run.id} trained with DCL, which detects no false negatives (it debiases the sum of all "
                "negatives): no flags to score")
    if cfg.loss.name != "false":
        return f"FALSE was off in run {run.id} (loss: {cfg.loss.name}): no detector ran, no flags to score"
    return None


def compute_report(run: Run, use_encoder: bool = True, progress: Progress | None = None,
                   up_to: int | None = None) -> dict[str, Any]:
    """Score the run's flags and the reference selectors now; store and return the JSON report. ``up_to``: score
    steps 1..up_to only (two runs compared on the batches they share), kept beside the whole run's report."""
    try:
        cfg = run_config(run)
    except ConfigError as err:
        raise FlagReportError(str(err)) from None
    reason = no_detector_reason(run, cfg)
    if reason:
        raise FlagReportError(reason)
    pairs = load_pairs(run)
    if pairs.empty:
        raise FlagReportError(f"run {run.id} has no flagged pairs (yet)")
    last_step = last_step_of(run, pairs)
    if up_to is not None and up_to >= last_step:
        up_to = None
    if up_to is not None:
        last_step = int(up_to)
        pairs = pairs[pairs["step"] <= last_step].reset_index(drop=True)
        if pairs.empty:
            raise FlagReportError(f"run {run.id} flagged no pair in its first {last_step} steps")
    key = cache_key(run, cfg, use_encoder, up_to)
    dataset = _dataset(cfg)
    classes = _check_labels(cfg, dataset)
    _check_same_tiles(run, dataset, getattr(cfg.data, "split_unit", None))
    world = int(run.status().get("world_size") or 1)
    order = BatchOrder(len(dataset), cfg.train.batch_size, cfg.seed, world)
    steps = moco_candidates(order, last_step, cfg.model.queue_size) if get_method(cfg.method).queue \
        else simclr_candidates(order, last_step)
    colours = tile_colours(dataset, np.arange(len(dataset)),
                           (lambda d, t: progress("colour statistics", d, t)) if progress else None)
    features = {"colour": (colours, COLOUR_METRIC)}
    notes = []
    enc = _encoder(run, cfg, dataset, progress) if use_encoder else None
    if enc is not None:
        features["encoder"] = (enc, "cosine")
    elif use_encoder:
        notes.append("no encoder checkpoint yet: the encoder selector is left out")
    if progress:
        progress("rebuilding batches and scoring", 0, last_step)
    detector = detector_of(cfg)
    quality = score_flags(pairs, steps, classes, place_ids(dataset), features, selection_of(cfg),
                          base_rate(classes), flagged_by=flagged_by(detector["name"]))
    if progress:
        progress("rebuilding batches and scoring", last_step, last_step)
    quality.notes.extend(notes)
    if detector["uses_labels"]:
        quality.notes.insert(0, ORACLE_NOTE)
    enc_step = _encoder_step(run) if enc is not None else None
    live = run.is_live()
    if live:  # read while training: say how far, and that the encoder is a checkpoint's, not the final one
        quality.notes.append(f"the run is still training (step {run.status().get('step')}): scored up to step "
                             f"{last_step}" + (", the last whose flags are written" if up_to is None else "") + (
                                 f"; the encoder selector reads its checkpoint of step {enc_step}" if enc_step else ""))
    elif enc_step is not None and enc_step < last_step:
        quality.notes.append(f"the encoder selector reads the checkpoint of step {enc_step}, while the flags run to "
                             f"step {last_step}: the run ended early, without a checkpoint after it (killed or failed)")
    report = quality.to_json()
    report.update(run=run.id, method=cfg.method, data=cfg.data.name, step=last_step, world_size=world,
                  up_to_step=up_to, detector=detector, strategy=detector["label"], encoder_step=enc_step, live=live)
    _store(run, key, report, partial=up_to is not None)
    return report


def _encoder_step(run: Run) -> int | None:
    card = read_json_file(run.checkpoint_dir / "encoder.json") or {}
    step = card.get("step")
    return int(step) if isinstance(step, (int, float)) else None


def flag_report(run: Run, use_encoder: bool = True, refresh: bool = False,
                progress: Progress | None = None, up_to: int | None = None) -> dict[str, Any]:
    """The stored report when it is current, else a new one (see :func:`compute_report`)."""
    if not refresh:
        cached = cached_report(run, use_encoder, up_to)
        if cached is not None:
            return cached
    return compute_report(run, use_encoder, progress, up_to)


# ------------------------------------------------------------------------------------------------ text
DETECTOR_NAMES = {"fnsd": "FNSD", "nearest": "nearest", "support": "support", "oracle": "oracle"}
ORACLE_NOTE = ("the oracle detector reads the labels: it flags only negatives of the anchor's own dominant class, so "
               "its precision is 100 % by construction whenever every flagged tile has a class; it is the ceiling of "
               "a detector, not a method")


def flagged_by(detector: str, markdown: bool = False) -> str:
    """The detector as the subject of "... flagged": FNSD, or the name of another (in backticks for markdown)."""
    name = DETECTOR_NAMES.get(detector, detector)
    return name if detector == "fnsd" or not markdown else f"`{name}`"


def flags_label(detector: str) -> str:
    """The flags of a detector in a table: "FNSD flags", "nearest flags", "oracle flags (uses labels)"."""
    return f"{DETECTOR_NAMES.get(detector, detector)} flags" + (" (uses labels)" if detector == "oracle" else "")


def report_detector(report: dict[str, Any]) -> dict[str, Any]:
    """A report's ``detector`` (FNSD for a report made before other detectors existed)."""
    return report.get("detector") or {"name": "fnsd", "treatment": "fncc", "label": "FALSE", "uses_labels": False,
                                      "flags": flags_label("fnsd")}


def selector_label(name: str, report: dict[str, Any]) -> str:
    """A selector's label in a report's table: the run's own flags by its detector's name."""
    if name == "flags":
        return report_detector(report)["flags"]
    at, last = report.get("encoder_step"), report.get("step")
    if name == "encoder" and isinstance(at, int) and isinstance(last, int) and (at < last or report.get("live")):
        return f"encoder nearest (step {at} encoder)"  # a killed or live run's last checkpoint, not a final encoder
    return SELECTOR_LABELS[name]


SELECTOR_LABELS = {
    "flags": "the run's flags",
    "random": "random negative (expected)",
    "colour": "colour-statistics nearest",
    "encoder": "encoder nearest (final encoder)",
    "oracle": "oracle ceiling (labels known)",
}


def _fmt(entry: dict[str, Any] | None, name: str = "flags") -> str:
    return entry_text(name, entry, gap="  ")


def report_lines(r: dict[str, Any]) -> list[str]:
    """The report as the lines the CLI prints."""
    det = report_detector(r)
    unit = r.get("unit", "pick")
    head = (f"run {r.get('run')}: {r.get('method')} on {r.get('data')}, {det['label']} (detector {det['name']}, "
            f"treatment {det['treatment']}), selection {r['selection']}, {r['pairs_flagged']} flagged pairs of the "
            f"loss's rows over {r['steps_with_flags']} of {r['steps_rebuilt']} steps: {r.get('units_flagged')} "
            f"{unit}s, each counted once per step however many views flagged it")
    what = ("an anchor tile's pick of a negative tile; each selector picks as many for the same anchor tiles"
            if unit == "pick" else "a pair of tiles of the batch; each selector picks as many pairs")
    lines = [head,
             f"precision: the share of a selector's {unit}s whose two tiles have the same dominant class (95 % "
             f"Wilson interval over the distinct tile pairs, weighed by how often each came; random and the oracle "
             f"are exact expectations; n: {unit}s scored, where a {unit} is {what}), on the run's own batches:"]
    if det["uses_labels"]:
        lines.insert(1, f"NOTE: {ORACLE_NOTE}")
    cross = r.get("cross_scene", {})
    for name in SELECTOR_LABELS:
        if name in r["selectors"]:
            x = f"   cross-scene {_fmt(cross.get(name), name)}" if name in cross else ""
            lines.append(f"  {selector_label(name, r):<34} {_fmt(r['selectors'][name], name)}{x}")
    for name in REFERENCES:  # read against each reference by the interval of the difference
        if (span := margin(r, name)) is not None:
            lines.append(f"  {'flags vs ' + name:<34} {margin_text(span)}")
    treated, acted = _fmt(r["calibrated"]), r.get("pairs_treated")
    if treated == "n/a" and r["pairs_flagged"] and acted == 0:  # none treated: the run was its base method in effect
        treated = (f"none: FNCC's gate opened for none of the {r['pairs_flagged']} flags (the run trained as its base "
                   "method)") if det["treatment"] == "fncc" else "none"
    elif treated == "n/a" and acted:
        treated = f"n/a: each of the {acted} treated pairs holds a tile without labeled pixels"
    lines.append(f"  {treated_label(det['treatment']):<34} {treated}")
    same = _fmt(r["same_scene"])
    same = same if same != "n/a" else "none: no flag paired two labeled tiles of one scene"
    lines.append(f"  {'same-scene flags only':<34} {same}")
    rec = r["recall_detail"]
    lines.append(f"base rate (two random tiles of the whole set): {r['base_rate']:.3f}, beside 'random negative', the "
                 "same rate over the batches' own negatives; recall "
                 f"{rec['hits']:.0f} of {rec['pairs']} same-class tile pairs offered (each once per step) = "
                 f"{recall_text(r)}")
    if r["excluded_unlabeled"] or r["tiles_without_class"]:
        lines.append(f"left out: {r['excluded_unlabeled']} {r.get('unit', 'pick')}s with a tile without labeled pixels "
                     f"({r['tiles_without_class']} such tiles)")
    if r["excluded_mirrored"]:
        lines.append(f"left out: {r['excluded_mirrored']} mirrored records (the same tile pair again)")
    lines += [f"note: {n}" for n in r.get("notes", []) if n != ORACLE_NOTE]
    return lines


def card_explanation(loss: Any) -> str:
    """What a flagged pair on the page is, for the run's detector and treatment (``loss``: its LossConfig)."""
    det, treatment = str(loss.detector), str(loss.treatment)
    picks = f"every negative at or above cosine {loss.similarity:.2f}" if loss.similarity is not None \
        else f"its {loss.topk} most similar negative{'s' if loss.topk != 1 else ''}"
    what = {
        "fnsd": "the candidate FNSD flagged: the negative whose cosine to the anchor (cos) came closest to the "
                "anchor's cosine to its own positive (cos_pos).",
        "nearest": f"a candidate `nearest` flagged: one of the anchor's most similar negatives by projection cosine "
                   f"(cos; it flags {picks}).",
        "support": f"a candidate `support` flagged: a negative most similar, on average, to {loss.support_views} "
                   f"extra augmented views of the anchor's image (FNC's support views; it flags {picks}).",
        "oracle": "a candidate the oracle flagged: a negative of the anchor's own dominant label class. The oracle "
                  "reads the labels, so every card is same-class by construction: the ceiling, not a method.",
    }.get(det, f"a candidate `{det}` flagged.")
    if treatment == "fncc":
        how = (f"FNCC treats it as a false negative only when cos_pos ≥ the threshold {loss.threshold:.2f}; below it "
               "the flag changed nothing in the loss, whatever its cosine.")
    elif treatment == "eliminate":
        how = "The treatment (eliminate) takes every flagged pair out of the anchor's denominator: no gate."
    else:
        how = "The treatment (attract) makes every flagged pair one more positive of the anchor: no gate."
    return f"Each card: the anchor's tile (its positive is another augmented view of the same tile) beside {what} {how}"


def treated_label(treatment: str) -> str:
    """The pairs the treatment applied to (``calibrated`` in the records): FNCC's gate, or every flag."""
    return "calibrated flags only" if treatment == "fncc" else f"treated flags ({treatment}: all)"
