"""The comparison's results as people read them: per-method means and spreads over pretraining seeds, paired
FALSE-vs-base differences with intervals and verdicts, the Markdown table, the CSV, the split and pretraining facts.

Why apart from ``core.seg.compare``: running the units and writing up their numbers change for different reasons; the
write-up is pure (rows in, text out) and the Fine-tune page reads the same labels. ``write_out`` puts the table into
the user's ``--out`` file, keeping the reading written above it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.labeled import SegSplits
from ..store.out_target import check_out_file
from ..store.portable import portable, portable_path
from ..store.runs import atomic_write_bytes, atomic_write_json, read_jsonl
from ..analysis.stats import mean_sd, paired_difference
from ..config.strategy import strategy_label, uses_labels

if TYPE_CHECKING:
    from .compare import CompareConfig, Units

LABELS = {"random": "random init", "simclr": "SimCLR", "simclr_false": "SimCLR + FALSE (global)",
          "simclr_false_pa": "SimCLR + FALSE (per anchor)", "moco": "MoCo v2", "moco_false": "MoCo v2 + FALSE (global)",
          "moco_false_pa": "MoCo v2 + FALSE (per anchor)"}
BASE_OF = {"simclr_false": "simclr", "simclr_false_pa": "simclr", "moco_false": "moco", "moco_false_pa": "moco"}


BASE_LABELS = {"simclr": "SimCLR", "moco": "MoCo v2"}


def _composed(method: str) -> tuple[str, dict[str, str]] | None:
    """``simclr+nearest+eliminate`` -> ("simclr", its loss dict); ``simclr+dcl`` -> ("simclr", {name: dcl})."""
    parts = method.split("+")
    if parts[0] not in BASE_LABELS or len(parts) not in (2, 3):
        return None
    if len(parts) == 2:
        return parts[0], {"name": parts[1]}
    return parts[0], {"name": "false", "detector": parts[1], "treatment": parts[2]}


def label(variant: str) -> str:
    """A method's label; ``method@R+G+B+NIR`` (a band set of a bands comparison) gets the bands after it. Composed
    names read as the strategy does everywhere (``SimCLR + nearest + eliminate``; the oracle marked as using labels)."""
    method, _, bands = variant.partition("@")
    composed = _composed(method)
    if composed is None:
        text = LABELS.get(method, method)
    else:  # DCL's prior is the preset's: not in the name
        text = f"{BASE_LABELS[composed[0]]} + " + ("DCL" if composed[1]["name"] == "dcl" else strategy_label(composed[1]))
    return text + (f" [{bands.replace('+', ', ')}]" if bands else "")


def uses_oracle(variant: str) -> bool:
    composed = _composed(variant.partition("@")[0])
    return composed is not None and uses_labels(composed[1])


def base_of(variant: str) -> str | None:
    """The base method of a variant that handles false negatives (or debiases), on the same band set."""
    method, at, bands = variant.partition("@")
    composed = _composed(method)
    base = BASE_OF.get(method) if composed is None else composed[0]
    return None if base is None else base + at + bands


def band_reference(variant: str, variants: list[str]) -> str | None:
    """In a bands comparison, the same method on the first band set (None for that set itself)."""
    method, at, _ = variant.partition("@")
    if not at:
        return None
    first = next((v for v in variants if v.partition("@")[0] == method), None)
    return None if first in (None, variant) else first


# ------------------------------------------------------------------------------------------------ tables
def flag_counts(run_path: str | Path) -> tuple[int, int]:
    """Pairs FNSD flagged and pairs FNCC calibrated in a pretraining run (mirrored records not counted)."""
    records = [r for r in read_jsonl(Path(run_path) / "fns.jsonl") if not r.get("mirrored")]
    return len(records), sum(bool(r.get("calibrated")) for r in records)


def calibrations(units: list[dict[str, Any]]) -> dict[str, float]:
    """Mean number of calibrated pairs per pretraining run, per method: FALSE can only matter where it is > 0."""
    per: dict[str, list[int]] = {}
    for u in units:
        if u["kind"] == "pretrain" and u.get("run"):
            per.setdefault(u["method"], []).append(flag_counts(u["run"])[1])
    return {m: sum(v) / len(v) for m, v in per.items()}


def hardly_treated(units: list[dict[str, Any]]) -> set[str]:
    """Methods whose every pretraining run is, in effect, its base method although its treatment acted at least once
    (``TreatmentEffect.negligible``: in under 1 step in 10, under 0.1 pairs per step): a tie with the base then says
    nothing about the method. (Runs it never acted in are said by their count of 0.)"""
    from ..analysis.fn_scoring import NEAR_ZERO_PER_STEP, NEAR_ZERO_SHARE, VERDICT_MIN_STEPS, treatment_of_run
    from ..store.runs import Run

    per: dict[str, list[tuple[bool, int]]] = {}
    for u in units:
        if u["kind"] == "pretrain" and u.get("run") and Path(u["run"]).is_dir():
            e = treatment_of_run(Run(Path(u["run"])))
            if e is not None:  # how often it acted, not negligible's alpha = 0 (a pair every step, of no weight)
                rare = e.steps >= VERDICT_MIN_STEPS and e.share < NEAR_ZERO_SHARE and e.per_step < NEAR_ZERO_PER_STEP
                per.setdefault(u["method"], []).append((rare, e.calibrated))
    return {m for m, runs in per.items() if all(n for n, _ in runs) and any(c for _, c in runs)}


def summarise(rows: list[dict[str, Any]], methods: list[str], calibrated: dict[str, float] | None = None,
              hardly: set[str] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per method: mean and sd over pretraining seeds (of the mean over evaluation seeds), mean IoU per class and
    calibrated pairs per run; per FALSE variant: the paired difference from its base method over the pretraining
    seeds both have."""
    calibrated = calibrated or {}
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    for r in rows:
        cell = per_seed.setdefault(r["method"], {}).setdefault(r["pretrain_seed"], {"miou": [], "oa": [], "kappa": []})
        for k in ("miou", "oa", "kappa"):
            cell[k].append(r[k])
    means = {m: {p: {k: sum(v) / len(v) for k, v in cell.items()} for p, cell in seeds.items()}
             for m, seeds in per_seed.items()}
    summary = []
    for m in methods:
        if m not in means:
            continue
        row: dict[str, Any] = {"method": m, "label": label(m), "pretrain_seeds": len(means[m]),
                               "runs": sum(len(c["miou"]) for c in per_seed[m].values())}
        for k in ("miou", "oa", "kappa"):
            mean, sd = mean_sd([v[k] for v in means[m].values()])
            row[f"{k}_mean"], row[f"{k}_sd"] = mean, None if sd != sd else sd  # JSON has no NaN: one seed, no sd
        ious = [r["iou"] for r in rows if r["method"] == m and r.get("iou")]
        row["iou_mean"] = {c: mean_sd([x[c] for x in ious if x[c] == x[c]])[0] for c in (ious[0] if ious else {})}
        row["miou_eval_sd"] = _within_sd([c["miou"] for c in per_seed[m].values()])
        row["calibrated_per_run"] = calibrated.get(m)
        summary.append(row)
    diffs = []
    pairs = [(m, base_of(m), "false") for m in methods] + [(m, band_reference(m, methods), "bands") for m in methods]
    for m, base, what in pairs:
        if base is None or m not in means or base not in means:
            continue
        common = sorted(set(means[m]) & set(means[base]))
        if not common:
            continue
        d = paired_difference([means[base][p]["miou"] for p in common], [means[m][p]["miou"] for p in common])
        diffs.append({"method": m, "base": base, "pretrain_seeds": common, "miou_points": {
            k: (100 * v if isinstance(v, float) and k not in ("level", "n") else v)  # the interval's level stays 0.95
            for k, v in d.to_json().items()}, "verdict": d.verdict,
            "calibrated_per_run": calibrated.get(m) if what == "false" else None, "compares": what,
            "uses_labels": uses_oracle(m), "hardly_treated": what == "false" and m in (hardly or set())})
    _against_the_oracle(diffs)
    return summary, diffs


def _within_sd(groups: list[list[float]]) -> float | None:
    """The sd over evaluation seeds within a pretraining seed, pooled over the pretraining seeds with two or more
    (None without any): the table's sd is of per-seed means, which hides how far one fine-tuning seed swings (a
    review read 6.19 ± 0.12 over four runs of 9.8, 2.7, 10.7 and 1.5 %)."""
    variances = [statistics.variance(g) for g in groups if len(g) >= 2]
    return math.sqrt(sum(variances) / len(variances)) if variances else None


def _against_the_oracle(diffs: list[dict[str, Any]]) -> None:
    """Each label-free method's gain as a share of the best oracle gain over the same base: how much of what perfect
    flags gave at this scale it recovers, both measured with noise (None without an oracle, or when the oracle gains
    nothing)."""
    best: dict[str, float] = {}
    for d in diffs:  # an oracle gain the design cannot tell from zero is no ceiling to take a share of
        if d.get("uses_labels") and d["verdict"] == "better":
            best[d["base"]] = max(best.get(d["base"], float("-inf")), d["miou_points"]["mean"])
    for d in diffs:
        ceiling = best.get(d["base"])
        d["oracle_gain_points"] = ceiling
        shared = not (d.get("uses_labels") or ceiling is None or ceiling <= 0)
        p = d["miou_points"]
        d["share_of_oracle_gain"] = p["mean"] / ceiling if shared else None
        # the method's own interval carried over (a bare "13 %" of a gain within noise read as a measured share;
        # the oracle's mean is taken as the ceiling, so this is the narrower side of the truth)
        bounds = [p.get("low"), p.get("high")]
        d["share_of_oracle_gain_interval"] = [b / ceiling for b in bounds] if shared and all(
            isinstance(b, float) and b == b for b in bounds) else None


def split_facts(splits: SegSplits, data: Any) -> dict[str, Any]:
    """Scenes and tiles of every split (and of the labeled training subset), for the table's header."""
    facts = {k: {"scenes": len(splits.scenes.get(k, [])), "tiles": len(getattr(splits, k)),
                 "scene_names": list(splits.scenes.get(k, []))} for k in ("train", "val", "test")}
    if splits.train_all is not None:
        facts["train"]["tiles"] = len(splits.train_all)
        facts["train"]["labeled_tiles"] = len(splits.train)
    facts["data"] = f"{data.name}" + (f" ({Path(data.root).name})" if data.root else "")
    return facts


def verdict_text(d: dict[str, Any]) -> str:
    who = "more bands" if d.get("compares") == "bands" else \
        ("FALSE" if d["method"].partition("@")[0] in BASE_OF else "the variant")
    text = {"better": f"{who} better", "worse": f"{who} worse"}.get(d["verdict"], d["verdict"])
    treatment = _treatment(d["method"])
    if d.get("calibrated_per_run") == 0 and d.get("compares", "false") == "false" and treatment is not None:
        text += (" (FNCC calibrated no pair: the runs equal the base's)" if treatment == "fncc" else
                 f" (the treatment ({treatment}) touched no pair: the runs equal the base's)")
    elif d.get("hardly_treated") and treatment is not None:
        text += (f" (the treatment ({treatment}) acted in under 1 step in 10: each run is, in effect, the base "
                 "method, so this compares almost the same runs)")
    return text


def _treatment(method: str) -> str | None:
    """The treatment a method name says ("simclr+nearest+eliminate" -> eliminate; FALSE's presets: fncc), None for
    a method that treats no flagged pair (DCL, the baselines): it differs from its base with none."""
    method = method.partition("@")[0]
    composed = _composed(method)
    if composed is None:
        return "fncc" if method in BASE_OF else None
    return composed[1].get("treatment")


def scene_list(names: list[str], most: int = 12) -> str:
    return ", ".join(names) if len(names) <= most else f"{', '.join(names[:most])}, ... (all in comparison.json)"


def to_markdown(cfg: CompareConfig, summary: list[dict[str, Any]], diffs: list[dict[str, Any]],
                facts: dict[str, Any], pretrain_facts: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    how = {"probe": "linear probe of the frozen encoder", "finetune": "fine-tuning preset"}[cfg.eval]
    evaluation = rows[0].get("evaluation", "tiles") if rows else "?"
    t = facts["test"]
    within = any(r.get("miou_eval_sd") is not None for r in summary)  # a column only where seeds were crossed
    lines = [f"### {cfg.name}: {how}, {len(cfg.pretrain_seeds)} pretraining seeds x {len(cfg.seeds)} evaluation "
             "seed(s)", "",
             f"Data: {facts['data']}. Evaluation splits by scene: train {facts['train']['scenes']} scenes / "
             f"{facts['train']['tiles']} tiles, val {facts['val']['scenes']} / {facts['val']['tiles']}, test "
             f"{t['scenes']} scenes ({scene_list(t['scene_names'])}), scored on {evaluation}. "
             f"Pretraining: {pretrain_facts.get('text', 'see the runs')}.", "",
             "| method | runs | mIoU (%) mean ± sd | OA (%) | kappa | treated pairs per run |"
             + (" mIoU sd over evaluation seeds |" if within else ""), "|---|---|---|---|---|---|" + "---|" * within]
    for r in summary:
        cal, sd = r.get("calibrated_per_run"), r.get("miou_eval_sd")
        lines.append(f"| {r['label']} | {r['runs']} | {_pm(r, 'miou', 100, 2)} | {_pm(r, 'oa', 100, 2)} | "
                     f"{_pm(r, 'kappa', 1, 3)} | {'' if cal is None else per_run_text(cal)} |"
                     + (f" {'n/a' if sd is None else f'{100 * sd:.2f}'} |" if within else ""))
    lines += ["", "sd: over pretraining seeds (each the mean over evaluation seeds); the sd over evaluation seeds, "
              "where a method has several, is within a pretraining seed, pooled. Treated pairs: the flagged pairs "
              "the method's treatment acted on during pretraining (FNCC reweighted, eliminate removed, attract made "
              "positives; a baseline's are 0), counted as pairs of the loss's rows (the run's fns.jsonl records; a "
              "row is one view of a tile, so a tile pair can count more than once a step); the flag report counts "
              "tile picks once a step instead.", ""]
    classes = list(summary[0].get("iou_mean") or {}) if summary else []
    if classes:
        lines += ["Mean IoU per class (%), over every run of a method:", "",
                  "| method | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        for r in summary:
            cells = [r["iou_mean"].get(c) for c in classes]
            lines.append(f"| {r['label']} | " + " | ".join("" if v is None or v != v else f"{100 * v:.1f}"
                                                           for v in cells) + " |")
        lines.append("")
    if diffs:
        oracle_bases = {d["base"] for d in diffs if d.get("uses_labels")}  # no oracle ran: no column of n/a
        lines += ["| variant | vs | Δ mIoU (points), paired | 95 % interval | half-width | "
                  + ("share of the oracle's gain | " if oracle_bases else "") + "verdict |",
                  "|---|---|---|---|---|" + ("---|" if oracle_bases else "") + "---|"]
        for d in diffs:
            p = d["miou_points"]
            ci = "n/a" if p["low"] is None or p["low"] != p["low"] else f"[{p['low']:+.2f}, {p['high']:+.2f}]"
            half = p.get("half_width")
            half_text = "n/a" if half is None or half != half else f"{half:.2f}"
            share = f"{_share_text(d, oracle_bases)} | " if oracle_bases else ""
            lines.append(f"| {label(d['method'])} | {label(d['base'])} | {p['mean']:+.2f} | {ci} | {half_text} | "
                         f"{share}{verdict_text(d)} |")
        lines += ["", f"Paired by pretraining seed (same start, batches and augmentations); Student-t interval over "
                  f"{len(cfg.pretrain_seeds)} seeds. \"within noise\": the interval holds 0. Half-width: half the "
                  "interval; a true effect of its size is found about half the time, smaller ones less often (with "
                  "few seeds the half-width is itself a rough estimate)."
                  + (" The oracle reads labels, so it is a reference, not a method: its gain estimates what "
                     "perfect flags give here, measured with the same noise (a label-free method's estimate above it "
                     "is noise, not a method beating perfect flags)." if oracle_bases else "")]
    return "\n".join(lines) + "\n"


def per_run_text(count: float) -> str:
    """A mean count per run, whole where it is, else to a tenth: half a pair in two runs read "0" (a review), the
    very figure of a treatment that never acted."""
    return f"{count:.0f}" if float(count).is_integer() or count >= 100 else f"{count:.1f}"


def _pm(row: dict[str, Any], key: str, scale: float, places: int) -> str:
    """"51.00 ± 0.84"; a method scored on one pretraining seed has no spread: "51.00 ± n/a (one seed)"."""
    mean, sd = row[f"{key}_mean"], row[f"{key}_sd"]
    spread = "n/a (one seed)" if sd is None or sd != sd else f"{scale * sd:.{places}f}"
    return f"{scale * mean:.{places}f} ± {spread}"


def _share_text(d: dict[str, Any], oracle_bases: set[str]) -> str:
    if d.get("uses_labels"):
        return "the ceiling (uses labels)"
    if d["base"] not in oracle_bases:
        return "n/a (no oracle over this base)"
    share = d.get("share_of_oracle_gain")
    if share is None:
        return "n/a (no oracle gain beyond noise)"
    span = d.get("share_of_oracle_gain_interval")
    return f"{100 * share:.0f} %" + (f" [{100 * span[0]:.0f}, {100 * span[1]:.0f}]" if span else "")


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    flat = [{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()} for r in rows]
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]))
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def pretrain_summary(units: Units) -> dict[str, Any]:
    """Scenes and tiles the encoders were pretrained on (from the first pretraining run's data.json)."""
    for u in units.done.values():
        if u["kind"] == "pretrain":
            rec = json.loads((Path(u["run"]) / "data.json").read_text()) if (Path(u["run"]) / "data.json").is_file() \
                else {}
            scenes = rec.get("pretrain_scenes") or []
            splits = "+".join(rec.get("pretrain_splits") or [])  # none for a folder: its images are its scenes
            text = f"{rec.get('tiles', '?')} tiles" + (f" of {len(scenes)} scenes" + (f" ({splits})" if splits else "")
                                                        if scenes else "")
            return {"tiles": rec.get("tiles"), "scenes": scenes, "splits": rec.get("pretrain_splits"), "text": text}
    return {"text": "no pretrained method"}


GENERATED = "## Generated"


def keep_reading(path: Path, md: str) -> str:
    """The new table under the ``## Generated`` heading of an existing ``--out`` file, with the reading written above
    it kept. Why: the docs' comparison pages pair a human reading with the generated table, and running their own
    reproduce command must not erase the reading. A file without that heading is replaced whole."""
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return md
    lines = old.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == GENERATED:
            return "".join(lines[:i + 1]) + "\n" + md
    return md


def check_out(out: str | None) -> None:
    """An ``--out`` the finished comparison could not write is refused before its first unit (a review learnt it
    after the whole run). Its JSON goes beside it (``NAME.json``), so a ``.json`` name would be overwritten."""
    if not out:
        return
    path = Path(out)
    check_out_file(path, example="comparison.md", beside=(".json", "JSON"))
    if path.suffix == ".json":
        raise ValueError(f"--out {out}: give a Markdown file name (its JSON is written beside it as NAME.json)")
    if not path.parent.is_dir():
        raise ValueError(f"--out {out}: its folder {path.parent} does not exist")


def write_out(path: Path, md: str, result: dict[str, Any], log: Any, given: bool) -> None:
    """The ``--out`` file (the reading above its ``## Generated`` heading kept) and its JSON, without machine paths.
    A resume's stored ``--out`` whose folder is gone is skipped; a failed write is one line (the run is complete)."""
    if not given and not path.parent.is_dir():
        log(f"not writing {path}, the --out of the first command: its folder is gone")
        return
    try:
        atomic_write_bytes(path, keep_reading(path, portable_path(md)).encode())
        atomic_write_json(path.with_suffix(".json"), portable(result))
    except OSError as err:
        log(f"could not write {path}: {err.strerror or err} (the table is in the run folder: table.md)")
        return
    if not given:
        log(f"wrote {path}, the --out of the first command")
