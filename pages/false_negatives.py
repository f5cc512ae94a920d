"""False negatives: which pairs a pretraining run's detector flagged (FALSE's FNSD, nearest, support, the oracle),
how many over training, whether they are right, and two runs' detectors side by side on the same batches.

All counting and scoring is in core.analysis (fn_scoring, fn_report, fn_compare); this page picks runs, turns widgets
into filters and draws.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.analysis import flag_precision
from core.analysis import fn_quality as fq
from core.analysis import fn_report
from core.analysis import fn_scoring as fn
from core.analysis.pair_grid import class_names, pair_tiles
from core.analysis.stats import share_relation
from core.config import ConfigError, DataConfig, LossConfig
from core.config.strategy import strategy_label, uses_labels
from core.ssl.run_start import check_same_data
from core.store.runs import Run
from core.imaging.bands import bands_of
from workbench.common import (BASE_RATE_MARGIN, STAY_NOTE, base_rate_line, dataset_of, go_to, kept_range, kept_valid,
                              pick_picture, pick_run, runs_of, show_error, pair_counts_figure, show_treatment,
                              shows_errors)
from workbench.fn_compare_view import compare_section

PER_PAGE = 12
PER_ROW = 3
SORT_LABELS = {"distance": "distance D (smallest first)", "cos": "cos (largest first)", "step": "step"}


def precision_figure(report: flag_precision.PrecisionReport, unit: str = "pick") -> go.Figure:
    bins = report.by_bin
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=bins["step_mid"], y=bins["precision"], mode="lines+markers", name="precision of the flags",
        error_y=dict(type="data", symmetric=False, array=bins["ci_high"] - bins["precision"],
                     arrayminus=bins["precision"] - bins["ci_low"], thickness=1),
        customdata=np.stack([bins["step_start"], bins["step_end"], bins["pairs"]], axis=1),
        hovertemplate="steps %{customdata[0]}–%{customdata[1]}: %{y:.2f} of %{customdata[2]} " + unit + "s"
                      "<extra></extra>"))
    base_rate_line(fig, report.base_rate, "(random pair)")
    fig.update_layout(title="Flags sharing the dominant class, per step bin (95 % Wilson interval)", height=320,
                      xaxis_title="step", yaxis_title="precision", yaxis_range=[0, 1.05],
                      margin=dict(l=10, r=BASE_RATE_MARGIN, t=40, b=10), showlegend=False)
    return fig


def filters(pairs: pd.DataFrame, run: Run, loss: LossConfig) -> pd.DataFrame:
    """Step range, calibrated (treated) only, order: the pairs the precision and the gallery below are about."""
    c1, c2, c3 = st.columns([3, 1, 2])
    lo, hi = int(pairs["step"].min()), int(pairs["step"].max())
    steps = (lo, hi)
    if hi > lo:
        steps = c1.slider("Steps", lo, hi, key=kept_range(f"fn-steps-{run.id}", lo, hi))
    else:
        c1.caption(f"All flags are from step {lo}.")
    fncc = loss.treatment == "fncc"
    calibrated_only = c2.checkbox(
        "Calibrated only" if fncc else "Treated only", key="fn-calibrated",
        help="pairs whose anchor's positive passed the FNCC gate (cos_pos ≥ threshold)" if fncc else
        f"pairs the treatment ({loss.treatment}) applied to: every flag, it has no gate")
    # FNSD ranks by the distance D = |cos - cos_pos|; the other detectors by the cosine itself, so theirs comes first
    order = list(SORT_LABELS) if loss.detector == "fnsd" else ["cos", "step", "distance"]
    labels = SORT_LABELS if loss.detector == "fnsd" else {**SORT_LABELS, "distance": "distance D (FNSD's measure; "
                                                                                     "this detector does not use it)"}
    sort_by = c3.selectbox("Sort by", order, format_func=labels.get, key=kept_valid(f"fn-sort-{loss.detector}", order))
    return fn.filter_pairs(pairs, steps, calibrated_only, sort_by)


@shows_errors
def precision_section(shown: pd.DataFrame, dataset: Any, data: DataConfig, detector: str,
                      ordered: bool = True) -> np.ndarray | None:
    """Precision against the base rate where the data set has labels; returns the dominant classes. ``ordered``:
    the flags are an anchor's picks (per-anchor selection, MoCo), else pairs of the batch."""
    st.subheader("Are the flags real false negatives?")
    dominant = fn.dominant_classes(dataset)
    report = flag_precision.precision_over_training(shown, dominant, ordered=ordered)
    unit = "pick" if ordered else "tile pair"
    if report is None:
        st.info(f"The data set ({data.name}, no class table) has no labels, so the flags cannot be scored. "
                "Pretrain on a labeled set (DeepGlobe, Potsdam, Vaihingen, LoveDA, the synthetic set, or a folder "
                f"with a class table) to see how often {fn_report.flagged_by(detector, markdown=True)} picks "
                "same-class tiles.")
        return None
    if report.pairs == 0:
        st.info("No flagged pair of two distinct tiles matches the filters.")
        return dominant
    c1, c2, c3 = st.columns(3)
    c1.metric("Precision", f"{report.precision:.3f}", help=f"{report.correct} of {report.pairs} flagged {unit}s "
              "share their dominant class (each once per step, however many of the tiles' views flagged it)")
    c2.metric("Base rate (two random tiles of the set)", f"{report.base_rate:.3f}", help="chance that two distinct "
              f"tiles drawn at random share their dominant class (exact, over all {report.n_tiles} tiles); the "
              "reference selectors below pick a random negative of the same anchors instead, in the same batches")
    lo, hi = report.ci
    side = ("above" if lo > report.base_rate else "below" if hi < report.base_rate else "level with")
    st.caption(f"The flags' precision is {side} the base rate{' within noise' if side == 'level with' else ''} "
               f"(95 % {lo:.3f}–{hi:.3f} against {report.base_rate:.3f}); the verdict against a random negative, the "
               "colour nearest and the encoder's own nearest neighbour of the same batches comes from the scoring "
               "below.")  # a walkthrough read 0.280 beside 0.360 with no word of which was ahead
    repeats = (f" over the {report.distinct} distinct tile pairs flagged (worth {report.effective:.1f}: a pair "
               "flagged at many steps is one fact)") if report.distinct < report.pairs else ""
    c3.metric("95 % interval", f"{lo:.3f}–{hi:.3f}", help=f"Wilson score interval of the precision{repeats}; "
              "beating chance is not enough: compare with the reference selectors below")
    st.plotly_chart(precision_figure(report, unit), width="stretch", key="fn-precision-chart")
    return dominant


SHORT_LABELS = {"random": "Random negative", "colour": "Colour nearest", "encoder": "Encoder nearest",
                "oracle": "Oracle ceiling"}
SELECTOR_COLOURS = {"flags": "#d62728", "random": "#7f7f7f", "colour": "#ff7f0e", "encoder": "#1f77b4",
                    "oracle": "#2ca02c"}


def short_label(name: str, report: dict[str, Any]) -> str:
    """A selector's metric label: the run's own flags by its detector ("FNSD flags", "nearest flags")."""
    if name == "flags":
        return fn_report.flags_label(fn_report.report_detector(report)["name"]).replace(" (uses labels)", "")
    return SHORT_LABELS[name]


def selectors_figure(report: dict[str, Any]) -> go.Figure:
    """Precision of the run's flags and of the reference selectors, all pairs and cross-scene pairs, 95 % intervals."""
    fig = go.Figure()
    for group, entries in (("all pairs", report["selectors"]), ("cross-scene pairs", report["cross_scene"])):
        names = [n for n in fq.SELECTORS if n in entries and entries[n]["pairs"]]
        values = [entries[n]["precision"] for n in names]
        bounds = [fq.entry_ci(n, entries[n]) for n in names]  # random and the oracle: exact, no bar
        fig.add_trace(go.Bar(
            x=[short_label(n, report) for n in names], y=values, name=group,
            marker_color=[SELECTOR_COLOURS[n] for n in names], opacity=1.0 if group == "all pairs" else 0.55,
            marker_pattern_shape="" if group == "all pairs" else "/",
            # NaN, not None, for an exact one: plotly.js reads null as 0 and still draws the cap
            error_y=dict(type="data", symmetric=False, thickness=1,
                         array=np.array([np.nan if n in fq.EXPECTED else hi - v
                                         for n, v, (_, hi) in zip(names, values, bounds)], float),
                         arrayminus=np.array([np.nan if n in fq.EXPECTED else v - lo
                                              for n, v, (lo, _) in zip(names, values, bounds)], float)),
            customdata=[entries[n]["pairs"] for n in names],
            hovertemplate="%{x}, " + group + ": %{y:.3f} of %{customdata} " + report.get("unit", "pick")
                          + "s<extra></extra>"))
    base_rate_line(fig, report["base_rate"])
    fig.update_layout(barmode="group", height=340, yaxis_range=[0, 1.05], yaxis_title="same dominant class",
                      title="Same-class share of the picks, on the run's own batches (95 % Wilson intervals; "
                            "random and oracle: exact expectations)",
                      margin=dict(l=10, r=BASE_RATE_MARGIN, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def quality_verdict(report: dict[str, Any]) -> str:
    """One sentence: where the run's detector stands between chance, the trivial colour selector, the encoder's own
    nearest neighbour (the README's question; a review found it left out) and the ceiling."""
    sel = report["selectors"]
    p, lo, hi = report["precision"], *report["precision_ci"]
    det = fn_report.report_detector(report)
    who = fn_report.flagged_by(det["name"], markdown=True)
    parts = [f"The pairs {who} flagged share their class {p:.0%} of the time (95 % interval {lo:.0%}–{hi:.0%})"]
    for name, what in (("random", "a random negative"), ("colour", "the nearest tile by colour"),
                       ("encoder", "the encoder's own nearest neighbour")):
        other = sel.get(name)
        if other and other["pairs"]:
            parts.append(share_relation(p, (lo, hi), other["precision"], fq.entry_ci(name, other), what))
    text = ", ".join(parts) + "."
    cross = report.get("cross_scene", {})
    mine, colour = cross.get("flags"), cross.get("colour")
    if mine and mine["pairs"] and colour and colour["pairs"]:
        rel = share_relation(mine["precision"], mine["ci"], colour["precision"], colour["ci"],
                             "the colour selector picking from other scenes")
        text += (f" Across scenes (neighbouring tiles share classes easily), {mine['precision']:.0%} of its flags "
                 f"share their class, {rel}.")
    if det["uses_labels"]:
        text += " These flags read the labels: their precision is 100 % by construction, the ceiling, not a method."
    return text


ORACLE_WARNING = ("This run's detector is the oracle: its flags read the labels (same dominant class), so its "
                  "precision is 100 % by construction whenever every flagged tile has a class. It is the ceiling of "
                  "a detector, not a method.")


@shows_errors
def quality_section(run: Run) -> None:
    """The run's flags against reference selectors on the same batches (``core.analysis.fn_report``), computed on
    request and cached."""
    st.subheader("Better than a trivial selector?")
    st.caption("Precision alone flatters: on aerial imagery the tile with the closest colours, or one from the same "
               "scene, often shares the class too. Here the batches the run trained on are rebuilt and other "
               "selectors pick from them as many as the detector flagged (for the same anchors under per-anchor "
               "selection; as many pairs of the batch under global selection): a random negative, the nearest "
               "by colour statistics, the nearest by the encoder, and an oracle that knows the labels. Their "
               "cross-scene figures come from the same picks made among other scenes' tiles only. Every figure counts "
               "a flag once per step, however many of the two tiles' views flagged it, and an interval counts a tile "
               "pair picked at many steps as one fact (weighed by how often it came). Random and the oracle are "
               "exact expectations for these anchors: no interval of their own.")
    report = fn_report.cached_report(run)
    label = "📐 Score the flags against reference selectors" if report is None else "🔄 Score again"
    if st.button(label, key=f"fn-quality-{run.id}", type="primary" if report is None else "secondary",
                 help="Rebuilds every batch of the run and computes encoder features of its tiles (seconds to a "
                      "minute); the result is kept in the run folder"):
        bar = st.progress(0.0, text=f"starting… ({STAY_NOTE})")

        def progress(stage: str, done: int, total: int) -> None:
            bar.progress(min(1.0, done / max(total, 1)), text=f"{stage}: {done} / {total} ({STAY_NOTE})")

        try:
            report = fn_report.compute_report(run, progress=progress)
        except fn_report.FlagReportError as err:
            bar.empty()
            show_error(err, "Cannot score the flags")
            return
        bar.empty()
    if report is None:
        return
    if run.is_live() and report.get("step", 0) < (run.status().get("step") or 0):
        st.caption(f"Scored at step {report['step']}; the run has gone on since. Score again for its newer flags.")
    st.markdown(quality_verdict(report))
    sel = report["selectors"]
    cols = st.columns(5)
    for col, name in zip(cols, fq.SELECTORS):
        entry = sel.get(name)
        if entry and entry["pairs"]:
            lo, hi = fq.entry_ci(name, entry)
            precision = entry["hits"] / entry["pairs"]  # from the counts: a stored value rounded again read 0.210
            ceiling = ("; below 1 where a batch held fewer same-class negatives than the detector flagged, so even "
                       "a selector knowing the labels had to pick others") if name == "oracle" else ""
            distinct = entry.get("distinct")
            spread = "its expected share for these anchors, exact (no sampling interval)" if name in fq.EXPECTED \
                else f"95 % interval {lo:.3f}–{hi:.3f}" + (
                    f" (over its {distinct} distinct tile pairs: a pair picked again is the same fact)"
                    if distinct is not None and distinct < entry["pairs"] else "")
            col.metric(short_label(name, report), f"{precision:.3f}",
                       help=f"{fn_report.selector_label(name, report)}: {spread}, "
                            f"{entry['pairs']} {report.get('unit', 'pick')}s{ceiling}")
    c1, c2, c3, c4 = st.columns(4)
    rec = report["recall_detail"]
    c1.metric("Recall", fq.recall_text(report), help=f"flagged same-class tile pairs ({rec['hits']:.0f}) over the "
              f"{rec['pairs']} same-class pairs the batches offered (each once per step)")
    cross = report["cross_scene"].get("flags", {})
    unit = report.get("unit", "pick")

    def count(n: int | None) -> dict[str, Any]:  # a precision of 1.000 from 3 picks is no 1.000 from 300: say n
        return {"delta": f"n = {n} {unit}{'' if n == 1 else 's'}", "delta_color": "off", "delta_arrow": "off"} \
            if n else {}

    c2.metric("Cross-scene precision", f"{report['cross_scene_precision']:.3f}"
              if report["cross_scene_precision"] is not None else "n/a", **count(cross.get("pairs")),
              help=f"flags between tiles of different scenes ({cross.get('pairs', 0)} {unit}s)")
    same = report["same_scene"]
    c3.metric("Same-scene precision", f"{same['precision']:.3f}" if same["pairs"] else "n/a", **count(same["pairs"]),
              help=f"flags between tiles of one scene ({same['pairs']} {unit}s): neighbours share classes easily")
    cal, treatment = report["calibrated"], fn_report.report_detector(report)["treatment"]
    c4.metric("Calibrated flags" if treatment == "fncc" else "Treated flags",
              f"{cal['precision']:.3f}" if cal["pairs"] else "n/a", **count(cal["pairs"]),
              help=f"precision of the {cal['pairs']} pairs FNCC actually reweighted" if treatment == "fncc" else
              f"precision of the {cal['pairs']} pairs the treatment ({treatment}) applied to: every flag")
    st.plotly_chart(selectors_figure(report), width="stretch", key=f"fn-selectors-{run.id}")
    notes = [*report.get("notes", [])]
    if report["excluded_unlabeled"]:
        notes.append(f"{report['excluded_unlabeled']} pairs with a tile without labeled pixels are left out "
                     f"({report['tiles_without_class']} such tiles)")
    if notes:
        st.caption(" · ".join(notes) + f" · the same report: `python -m core.fn_report {run.path}`")


@shows_errors
def gallery(shown: pd.DataFrame, dataset: Any, dominant: np.ndarray | None, run: Run, loss: LossConfig) -> None:
    """Anchor tile | flagged candidate, a page of pairs at a time."""
    st.subheader(f"Flagged pairs ({len(shown)})")
    if shown.empty:
        st.info("No flagged pair matches the filters.")
        return
    n_pages = math.ceil(len(shown) / PER_PAGE)
    page = 1
    if n_pages > 1:
        page = int(st.number_input(f"Page (of {n_pages})", 1, n_pages, 1, key=f"fn-page-{run.id}-{n_pages}"))
    rows = shown.iloc[(page - 1) * PER_PAGE: page * PER_PAGE]
    picture = pick_picture(bands_of(dataset), f"fn-picture-{run.id}")
    anchors, candidates = pair_tiles(dataset, rows, picture)
    names = class_names(dataset)
    st.caption(fn_report.card_explanation(loss))
    threshold = loss.threshold if loss.treatment == "fncc" else None
    cols = st.columns(PER_ROW)
    for n, (rec, a_img, c_img) in enumerate(zip(rows.itertuples(index=False), anchors, candidates)):
        with cols[n % PER_ROW].container(border=True):
            left, right = st.columns(2)
            left.image(a_img, caption=f"anchor #{rec.anchor_index}",
                       width="stretch")
            right.image(c_img, caption=f"flagged #{rec.candidate_index}", width="stretch")
            st.caption(pair_caption(rec, dominant, names, threshold, loss.treatment))


def class_name(k: int, names: list[str]) -> str:
    if k == fn.NO_CLASS:
        return "no labeled pixel"
    return names[k] if 0 <= k < len(names) else str(k)


def pair_caption(rec: Any, dominant: np.ndarray | None, names: list[str], threshold: float | None = None,
                 treatment: str = "fncc") -> str:
    """A card's line: the candidate's cosine and the anchor-positive cosine (FNSD matched the one to the other), the
    distance D, and whether the treatment applied (FNCC: whether its gate opened, with the threshold)."""
    digits = 3  # FNSD flags a negative as similar to the anchor as its positive: to 3 decimals the two read the same
    while digits < 6 and rec.cos_pos == rec.cos_pos and f"{rec.cos:.{digits}f}" == f"{rec.cos_pos:.{digits}f}":
        digits += 1  # (a walkthrough read "0.661 · 0.661" on every card as a display bug)
    pos = f"{rec.cos_pos:.{digits}f}" if rec.cos_pos == rec.cos_pos else "?"  # NaN: a record without it
    gate = "" if threshold is None or pos == "?" else \
        f" (cos_pos ≥ {threshold:.2f})" if rec.calibrated else f" (cos_pos < {threshold:.2f})"
    done = ("calibrated ✅" if rec.calibrated else "not calibrated") if treatment == "fncc" else \
        (f"treated ({treatment}) ✅" if rec.calibrated else "not treated")
    text = (f"step {rec.step} · candidate cos {rec.cos:.{digits}f} · anchor-positive cos_pos {pos} · "
            f"D {rec.distance:.2e} · {done}{gate}")
    if dominant is not None:
        a, c = int(dominant[rec.anchor_index]), int(dominant[rec.candidate_index])
        verdict = "not scored" if fn.NO_CLASS in (a, c) else "same class ✅" if a == c else "different class ❌"
        text += f" · {verdict} ({class_name(a, names)} / {class_name(c, names)})"
    return text


def treatment(run: Run, pairs: pd.DataFrame) -> None:
    """What the calibration changed (``common.show_treatment``), from the flagged pairs counted per step."""
    per_step = pairs.groupby("step").agg(flagged=("step", "size"), calibrated=("calibrated", "sum")).reset_index()
    top = float(pairs["cos_pos"].max()) if pairs["cos_pos"].notna().any() else None
    show_treatment(run, per_step, top_cos_pos=top)


def overview(run: Run, pairs: pd.DataFrame, loss: LossConfig) -> None:
    treatment(run, pairs)
    c1, c2, c3, c4 = st.columns(4)
    calibrated = int(pairs["calibrated"].sum())
    c1.metric("Flagged pairs", len(pairs), help="one per row of the loss that flagged it (a tile pair flagged from "
              "both of its views counts twice): the precision figures below count each pick once per step, so their "
              "n is smaller")
    if loss.treatment == "fncc":
        c2.metric("Calibrated", calibrated, help="flags whose anchor passed the FNCC gate and changed the loss")
    else:
        c2.metric("Treated", calibrated, help=f"flags the treatment ({loss.treatment}) applied to: every flag")
    c3.metric("Steps with a flag", pairs["step"].nunique(), help=f"of {run.recorded_step() or '?'} steps")
    c4.metric("Distinct tiles", len(set(pairs["anchor_index"]) | set(pairs["candidate_index"])),
              help="tiles in at least one flagged pair, as anchor or candidate: few against many flags means the "
                   "detector keeps flagging the same tiles")
    counts = fn.flag_counts(pairs, run.recorded_step())
    st.plotly_chart(pair_counts_figure(counts, loss.treatment), width="stretch", key="fn-counts-chart")


def detector_line(loss: LossConfig) -> None:
    """The run's detector and treatment in one line; the oracle's plain warning that it reads labels."""
    label = strategy_label(loss.model_dump(mode="json"))
    st.caption(f"False-negative handling: **{label}** (detector `{loss.detector}`, treatment `{loss.treatment}`).")
    if uses_labels(loss.model_dump(mode="json")):
        st.warning(ORACLE_WARNING, icon="🏷️")


def page() -> None:
    st.title("🔍 False negatives")
    st.caption("The pairs a run's detector flagged while pretraining (candidate false negatives: FALSE's FNSD, or "
               "`nearest`, `support`, the `oracle`; only the pairs its treatment applied to changed the loss), the "
               "anchor's tile beside the flagged candidate, where the data has labels how often the two share a "
               "class, and two runs' detectors side by side on the same batches.")
    run = pick_run("Pretraining run", runs_of("pretrain"), key="fn-run",
                   prefer=lambda r: (r.path / "fns.jsonl").is_file() and (r.path / "fns.jsonl").stat().st_size > 0,
                   empty="No pretraining runs yet. Start one on the Pretrain page; its flagged pairs show here.")
    if run is None:
        if st.button("🧪 Go to the Pretrain page", key="fn-go-pretrain"):
            go_to("pretrain")
        return
    try:
        cfg = fn.run_config(run)
    except ConfigError as err:
        show_error(err, "Cannot read this run")
        return
    pairs = fn.load_pairs(run)
    reason = fn.nothing_flagged_reason(run, cfg, pairs)
    if reason:
        st.info(reason)
        if cfg.loss.name == "false":  # a FALSE run that flagged nothing: how long it went without a calibration
            treatment(run, pairs)
        return
    detector_line(cfg.loss)
    overview(run, pairs, cfg.loss)
    shown = filters(pairs, run, cfg.loss)
    try:
        dataset = dataset_of(cfg.data)
        check_same_data(run.path, dataset, cfg.data.split_unit)  # the flags' tile indices are the run's tiles
    except Exception as err:  # noqa: BLE001 - a missing folder or broken cache is one line, not a traceback
        show_error(err, "data set")
        return
    dominant = precision_section(shown, dataset, cfg.data, cfg.loss.detector, fn_report.picks_ordered(cfg))
    if dominant is not None:
        quality_section(run)
        compare_section(run)
    gallery(shown, dataset, dominant, run, cfg.loss)


page()
