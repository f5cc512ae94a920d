"""The Runs page's comparison parts: settings as table columns (after what a run is and how it ended), the kind of
runs compared, curves smoothed / in log scale / grouped by a setting with mean and spread (and a word when curves
hide each other), the config diff of two runs, and the tags and note of one run (``core.store.run_compare`` does the
work; this only draws it)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.store.run_compare import (
    COINCIDE_TOL,
    all_tags,
    coinciding,
    config_diff,
    differing_keys,
    differing_within_kinds,
    group_curve,
    groups_of,
    read_notes,
    run_settings,
    smooth,
    write_notes,
)
from core.store.runs import Run
from workbench.common import COLOURS, curve_frame, curves_figure, kept_valid, logged_values, pairs_frame

MAX_DEFAULT_COLUMNS = 10
FIRST_COLUMNS = ("run", "kind", "state", "method", "metric", "value", "treatment", "tags")  # then the settings
KIND_LABELS = {"pretrain": "pretraining", "finetune": "fine-tuning", "probe": "linear probe", "compare": "comparison",
               "": "every kind"}
METRICS = {  # the values each kind logs, for the curves chart
    "pretrain": ["loss", "lr", "images_per_s", "flagged", "calibrated", "pos_cos", "neg_cos", "knn_acc"],
    "finetune": ["loss", "lr", "images_per_s", "miou"],
    "probe": ["loss", "lr"],  # the linear head's, once per epoch (its records' step is the epoch)
}
METRIC_LABELS = {"calibrated": "calibrated or treated"}  # eliminate and attract act on every flag: "calibrated"
# alone would name only FNCC's count
CURVE_KINDS = tuple(METRICS)  # the kinds whose metrics.jsonl has curves (a comparison's has none)


def settings_of(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Each run's settings as dotted keys (only those its loss reads: InfoNCE has no detector to group by)."""
    return {r.id: run_settings(r.config()) for r in runs}


def with_settings(table: pd.DataFrame, runs: Sequence[Run], settings: dict[str, dict[str, Any]],
                  tags_of: dict[str, list[str]], key: str) -> pd.DataFrame:
    """The runs table with tags and the settings the user picked as columns (by default the ones that differ
    between listed runs of the same kind), after what a run is and how it ended: run, kind, state, method, its
    final metric, the treatment of a run with a detector, tags, then the settings, then the rest."""
    shown = [settings[r.id] for r in runs if settings.get(r.id)]  # a run whose config is unreadable has none
    every = sorted({k for s in shown for k in s})
    differ = differing_within_kinds({r.id: settings.get(r.id, {}) for r in runs}, {r.id: r.kind() for r in runs})
    columns = st.multiselect(
        "Settings as columns", every, default=differ[:MAX_DEFAULT_COLUMNS], key=key,
        help=f"By default the settings that differ between listed runs of the same kind ({len(differ)} of "
             f"{len(every)}" + (f"; the first {MAX_DEFAULT_COLUMNS} shown" if len(differ) > MAX_DEFAULT_COLUMNS
                                else "") + ")")
    out = table.copy()
    out.insert(1, "tags", [", ".join(tags_of.get(r.id, [])) for r in runs])
    first = [c for c in FIRST_COLUMNS if c in out]
    rest = [c for c in out.columns if c not in first]
    out = out[first]
    for col in columns:  # a setting named like a column of the table (method, name) keeps both
        out[col if col not in table and col not in out else f"{col} (config)"] = \
            _column([settings.get(r.id, {}).get(col) for r in runs])
    return pd.concat([out, table[[c for c in rest if c in table]]], axis=1) if rest else out


def _column(values: list[Any]) -> list[Any]:
    """One type per column: numbers when every value set is a number (missing ones empty), else text (missing ones
    a dash)."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if all(number(v) for v in values if v is not None) and any(v is not None for v in values):
        return [float("nan") if v is None else v for v in values]
    return ["—" if v is None else str(v) for v in values]


def curve_controls(settings: dict[str, dict[str, Any]], picked: Sequence[str]) -> tuple[float, bool, str | None]:
    """Smoothing, log scale and group-by for the curves chart."""
    c1, c2, c3 = st.columns([2, 1, 2])
    weight = c1.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="runs-smooth",
                       help="Exponential moving average as in TensorBoard (0 = the values as logged)")
    log_y = c2.checkbox("Log scale", key="runs-log")
    keys = differing_keys([settings[p] for p in picked if p in settings]) if len(picked) > 1 else []
    group = c3.selectbox("Group by", ["(no grouping)", *keys], key="runs-group",
                         help="One line per value of a setting among the chosen runs: the mean over its runs, "
                              "the band ± one standard deviation (steps all of them logged)")
    return weight, log_y, None if group == "(no grouping)" else group


def default_kind(with_curves: Sequence[Run], runs: Sequence[Run]) -> str:
    """The kind compared by default: that of the first listed run with curves whose kind has at least two such runs
    (one curve compares nothing), else of the first run with curves, else of the first run."""
    kinds = [r.kind() for r in with_curves]
    several = [k for k in kinds if kinds.count(k) > 1]
    return several[0] if several else kinds[0] if kinds else runs[0].kind() if runs else ""


def compare_kind(container: Any, runs: Sequence[Run], with_curves: Sequence[Run], key: str) -> str:
    """Which kind of runs the curves and the config diff compare: one kind by default (``default_kind``), as runs
    of different kinds share few settings and no curve; "" for every kind."""
    kinds = [k for k in ("pretrain", "finetune", "probe", "compare") if any(r.kind() == k for r in runs)]
    if not kinds:
        return ""
    first = default_kind(with_curves, runs)
    options = kinds + [""] if len(kinds) > 1 else kinds
    return container.selectbox("Compare runs of", options, index=options.index(first) if first in options else 0,
                               format_func=lambda k: KIND_LABELS.get(k, k), key=key,
                               help="Curves and the config diff compare runs of one kind (a pretraining and a "
                                    "fine-tuning run share few settings and no curve); choose every kind to mix "
                                    "them")


def metrics_of(kind: str, runs: Sequence[Run]) -> list[str]:
    """The values to chart for runs of ``kind`` ("" every kind); flagged and calibrated pairs only where a run
    has a detector (FALSE)."""
    from core.analysis.fn_scoring import has_detector

    names = METRICS.get(kind) or list(dict.fromkeys(METRICS["pretrain"] + METRICS["finetune"]))
    if not any(r.kind() == "pretrain" and has_detector(r.config()) for r in runs):
        names = [n for n in names if n not in ("flagged", "calibrated")]
    logged: set[str] = set()  # a value no run logged (the kNN monitor of runs shorter than knn_every) drew an
    for r in runs:  # empty chart
        logged |= logged_values(r)
    return [n for n in names if n in logged] or names[:1]


def without_detector(runs: Sequence[Run], picked: Sequence[str], metric: str) -> list[str]:
    """The chosen runs a flagged-pairs chart leaves out: no detector ran in them, so a line at 0 would read as
    "found nothing"."""
    from core.analysis.fn_scoring import has_detector

    if metric not in ("flagged", "calibrated"):
        return []
    return [r.id for r in runs if r.id in set(picked) and not has_detector(r.config())]


def x_title(kind: str, picked: Sequence[str], runs: Sequence[Run]) -> str:
    """What the curves' x axis counts: steps, a probe's epochs, or both when probes are charted with others."""
    kinds = {r.kind() for r in runs if r.id in set(picked)} if not kind else {kind}
    if kinds == {"probe"}:
        return "epoch"
    return "step (epoch for linear probes)" if "probe" in kinds else "step"


def _values(frame: pd.DataFrame, metric: str, weight: float) -> pd.DataFrame:
    part = frame[["step", metric]].dropna().sort_values("step") if metric in frame else pd.DataFrame()
    if part.empty:
        return pd.DataFrame(columns=["step", metric])
    return pd.DataFrame({"step": part["step"].to_numpy(), metric: smooth(part[metric].tolist(), weight)})


def curve_series(runs: Sequence[Run], picked: Sequence[str], metric: str, weight: float) -> dict[str, pd.DataFrame]:
    """The chosen runs' values of ``metric`` by step, smoothed, in the order chosen. Flagged and treated pairs are
    every step's (``fns.jsonl``): the logged steps' samples showed 1 of a run's 10 calibrations (a review)."""
    by_id = {r.id: r for r in runs}
    frame = pairs_frame if metric in ("flagged", "calibrated") else curve_frame
    return {i: _values(frame(by_id[i]), metric, weight) for i in picked if i in by_id}


def hidden_curves(series: dict[str, pd.DataFrame], metric: str) -> list[list[str]]:
    """Groups of the chosen runs whose curves lie on top of each other (``run_compare.coinciding``)."""
    return coinciding({i: list(zip(f["step"], f[metric])) for i, f in series.items() if metric in f})


def curves_chart(series: dict[str, pd.DataFrame], metric: str, weight: float, log_y: bool, group: str | None,
                 settings: dict[str, dict[str, Any]], hidden: Sequence[Sequence[str]] = (),
                 x: str = "step") -> go.Figure:
    """The chosen runs' curves of ``metric``, smoothed; grouped when a setting is given. A curve that lies on an
    earlier one (``hidden``) is dashed, so the one below shows through. ``x``: the x axis's title (``x_title``)."""
    title = METRIC_LABELS.get(metric, metric) + (f" (smoothed {weight:.2f})" if weight else "")
    if group is None:
        fig = curves_figure(series, metric, title, log_y=log_y)
        fig.update_xaxes(title_text=x)
        later = {i for g in hidden for i in g[1:]}
        for trace in fig.data:
            if trace.name in later:
                trace.line.dash = "dash"
                trace.line.width = 3
        return fig
    fig = go.Figure()
    for n, (value, ids) in enumerate(sorted(groups_of({i: settings.get(i, {}) for i in series}, group).items())):
        rows = group_curve([list(zip(series[i]["step"], series[i][metric])) for i in ids])
        if not rows:
            continue
        colour = COLOURS[n % len(COLOURS)]
        steps = [r["step"] for r in rows]
        lo = [r["mean"] - r["std"] for r in rows]
        hi = [r["mean"] + r["std"] for r in rows]
        if log_y:  # a band reaching 0 or below cannot be drawn on a log axis
            lo = [v if v > 0 else math.nan for v in lo]
        fig.add_trace(go.Scatter(x=steps + steps[::-1], y=hi + lo[::-1], fill="toself", fillcolor=colour,
                                 opacity=0.2, line=dict(width=0), hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=steps, y=[r["mean"] for r in rows], mode="lines+markers" if len(rows) < 30
                                 else "lines", name=f"{group}={value} ({len(ids)} run{'s' if len(ids) > 1 else ''})",
                                 line=dict(color=colour)))
    fig.update_layout(title=f"{title}: mean ± sd by {group}", height=300, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title=x, legend=dict(orientation="h", y=-0.3))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def hidden_note(hidden: Sequence[Sequence[str]], metric: str) -> str | None:
    """Say which curves lie on top of each other, since a chart shows them as one."""
    if not hidden:
        return None
    parts = [(" and ".join(g) if len(g) == 2 else ", ".join(g[:-1]) + f" and {g[-1]}") for g in hidden]
    return (f"The {metric} curves of {'; of '.join(parts)} coincide (within {COINCIDE_TOL:.1%} of the chart's "
            "range): one hides the other, so the later ones are dashed. Runs this alike changed nothing that "
            f"{metric} shows.")


OBJECTIVE_KEYS = ("method", "loss.name", "loss.treatment")  # what sets a loss's scale: its negatives and its form
# what sets the same objective's value: how many negatives (the batch; MoCo's queue), its temperature, the images
SCALE_KEYS = {"train.batch_size": "batch size", "model.queue_size": "queue size", "loss.temperature": "temperature",
              "data.name": "data set", "data.root": "data folder"}


def scale_differences(settings: dict[str, dict[str, Any]], picked: Sequence[str]) -> str:
    """The settings other than the objective that move a contrastive loss's value and differ between the runs, with
    each run's values ("batch size, data set (a: 64, synthetic; b: 32, folder)"), or ""."""
    if not all("loss.temperature" in settings.get(i, {}) for i in picked):
        return ""  # not contrastive pretraining (a fine-tuning's per-pixel loss does not grow with its batch)
    methods = {settings.get(i, {}).get("method") for i in picked}
    keys = [k for k in SCALE_KEYS if (k != "model.queue_size" or "moco" in methods)
            and (k != "train.batch_size" or "simclr" in methods)  # MoCo's negatives are its queue, not its batch
            and len({str(settings.get(i, {}).get(k)) for i in picked}) > 1]
    if not keys:
        return ""
    values = "; ".join(f"{i}: " + ", ".join(str(settings.get(i, {}).get(k, "-")) for k in keys) for i in picked)
    return f"{', '.join(SCALE_KEYS[k] for k in keys)} ({values})"


def objective_note(settings: dict[str, dict[str, Any]], picked: Sequence[str], metric: str,
                   effects: dict[str, Any] | None = None) -> str | None:
    """Say it when the loss curves on one chart are not on one scale: different objectives (SimCLR's in-batch
    negatives or MoCo's queue; InfoNCE, FNCC's reweighting, eliminated or attracted flags, DCL's debiased sum), or one
    objective over other batch sizes, temperatures or images (InfoNCE grows with the log of the negatives). Only
    each curve's shape can then be read. ``effects``: each run's ``TreatmentEffect`` (None without a detector); a run
    whose treatment (almost) never acted minimised, in effect, its base method's loss, and the review saw "not on one
    scale" under two curves that were equal to 4 decimals; another review saw "their heights compare" under a Dubai
    run at batch 32 and a synthetic run at batch 64."""
    if metric != "loss":
        return None
    objectives = {i: " / ".join(str(settings.get(i, {})[k]) for k in OBJECTIVE_KEYS if k in settings.get(i, {}))
                  for i in picked}
    scales = scale_differences(settings, picked)
    other_scale = (f"Their {scales} differ, and a loss's value moves with them (the number of negatives, the "
                   "temperature, the images): compare each curve's shape, not the heights between them."
                   ) if scales else ""
    if len(set(objectives.values())) < 2:
        return f"These runs minimise one objective, but not on one scale. {other_scale}" if scales else None
    idle = {i: e for i, e in (effects or {}).items() if i in objectives and e is not None and e.negligible}
    base = {i: f"{settings.get(i, {}).get('method')} / info_nce" if i in idle else o for i, o in objectives.items()}
    if idle and len(set(base.values())) < 2:
        said = "; ".join(f"{i}: {e.figures()}" for i, e in idle.items())
        if scales:
            return (f"The treatment hardly acted ({said}), so these runs minimised, in effect, one objective; but "
                    + other_scale[0].lower() + other_scale[1:])
        return (f"The treatment hardly acted ({said}): on the steps it did not act, these runs minimised the same "
                "loss, so their heights compare; they part only where it acted.")
    listed = "; ".join(f"{i}: {o}" for i, o in objectives.items())
    return (f"These runs minimise different objectives ({listed}). Their loss values are not on one scale (other "
            "negatives, or negatives reweighted, dropped or debiased): compare each curve's shape, not the heights "
            "between them." + (f" Their {scales} differ too." if scales else ""))


def diff_section(runs: Sequence[Run], settings: dict[str, dict[str, Any]], picked: Sequence[str]) -> None:
    """Two runs' configs side by side, only the settings that differ."""
    ids = [r.id for r in runs]
    if len(ids) < 2:
        st.caption("The config diff needs two runs of the kind compared." if ids else
                   "The config diff needs two runs in the table.")
        return
    first = [i for i in picked if i in ids][:2]
    a0, b0 = (first + [i for i in ids if i not in first])[:2]
    for key in ("runs-diff-a", "runs-diff-b"):  # a run deleted or filtered away: its pick goes (the box would
        kept_valid(key, ids)  # fall back to the first run, A's), and is set afresh below
    kept_b = st.session_state.get("runs-diff-b")
    if "runs-diff-a" not in st.session_state and a0 == kept_b:  # a side that starts afresh takes another run
        a0 = next(i for i in ids if i != kept_b)
    kept_a = st.session_state.get("runs-diff-a", a0)
    if "runs-diff-b" not in st.session_state and b0 == kept_a:
        b0 = next(i for i in ids if i != kept_a)
    # set, not left to an index: a pick dropped server-side went on showing in the browser's box (a review)
    st.session_state.setdefault("runs-diff-a", a0)
    st.session_state.setdefault("runs-diff-b", b0)
    c1, c2 = st.columns(2)
    a = c1.selectbox("Run A", ids, key="runs-diff-a")
    b = c2.selectbox("Run B", ids, key="runs-diff-b")
    if a == b:
        st.caption("Pick two different runs.")
        return
    by_id = {r.id: r for r in runs}
    if by_id[a].kind() != by_id[b].kind():
        st.caption(f"A is a {KIND_LABELS.get(by_id[a].kind(), by_id[a].kind())} run and B a "
                   f"{KIND_LABELS.get(by_id[b].kind(), by_id[b].kind())} run: most of their settings differ by "
                   "nature. Compare runs of one kind above to see what tells them apart.")
    rows = config_diff(by_id[a].config(), by_id[b].config())
    rows = [r for r in rows if r[0] != "name"]
    if not rows:
        st.success("The two configs are the same (apart from the name).")
        return
    sa, sb = settings.get(a, {}), settings.get(b, {})
    st.dataframe(pd.DataFrame([(k, _text(k, sa), _text(k, sb)) for k, _, _ in rows], columns=["setting", a, b]),
                 hide_index=True, width="stretch")
    st.caption(f"{len(rows)} setting(s) differ; {len(settings.get(a, {}))} settings in A, "
               f"{len(settings.get(b, {}))} in B.")


def _text(key: str, settings: dict[str, Any]) -> str:
    """A setting as the diff shows it: a null value ("none") and a setting the run lacks read differently, so no
    row shows the same text on both sides."""
    if key not in settings:
        return "(not read by its loss)" if key.startswith("loss.") else "(not set)"
    return "none" if settings[key] is None else str(settings[key])


def _save_notes(run: Run) -> None:
    """The Save button's callback: it runs before the page is drawn again, so the table shows the new tags."""
    tags, note = st.session_state[f"runs-tags-{run.id}"].split(","), st.session_state[f"runs-note-{run.id}"]
    try:
        saved = write_notes(run, tags, note)
    except (ValueError, OSError) as err:
        st.session_state["runs-flash"] = ("error", f"Tags and note of {run.id} not saved: {err}")
        return
    st.session_state[f"runs-tags-{run.id}"] = ", ".join(saved["tags"])  # the field shows what was kept, at once
    done = f"Saved {run.id}: {len(saved['tags'])} tag(s), a note of {len(saved['note'])} characters."
    st.session_state["runs-flash"] = ("success", done, "🏷️")


def notes_tab(run: Run, tags_of: dict[str, list[str]]) -> None:
    """Tags, typed comma-separated, and a free note for one run, saved in its ``notes.json``. A text field and not a
    multiselect: a tag typed there without Enter was dropped at Save with nothing said (a walkthrough); the tags in use
    are named beneath it instead."""
    notes = read_notes(run)
    in_use = all_tags([*tags_of.values(), notes["tags"]])
    with st.form(f"runs-notes-{run.id}", enter_to_submit=False, border=False):
        st.text_input("Tags", ", ".join(notes["tags"]), key=f"runs-tags-{run.id}", placeholder="e.g. keep, dubai",
                      help="Comma-separated; tags can filter the table above")
        if in_use:
            st.caption("Tags in use: " + ", ".join(in_use))
        st.text_area("Note", notes["note"], key=f"runs-note-{run.id}", height=120)
        st.form_submit_button("Save tags and note", key=f"runs-notes-save-{run.id}", on_click=_save_notes,
                              args=(run,))


def knn_noise_note(runs: Sequence[Run]) -> str | None:
    """Under the kNN curves of two or more runs: how far apart their last values may lie by chance (a review read
    0.703 against 0.660 as FALSE gaining, on 256 query tiles and 9 calibrated pairs). The interval of two binomial
    shares (``difference_text``) from the runs' recorded query counts; records made before they were kept count as
    the monitor's cap, which gives the narrowest interval, so then only "within noise" is claimed."""
    from core.ssl.knn_monitor import QUERY_TILES
    from workbench.common import difference_text

    last, chance = [], []
    for run in runs:
        rows = [m for m in run.metrics() if isinstance(m, dict) and isinstance(m.get("knn_acc"), (int, float))]
        if rows:
            last.append((run.id, float(rows[-1]["knn_acc"]), rows[-1].get("knn_queries")))
            chance.append(rows[-1].get("knn_baseline"))
    if len(last) < 2:
        return None
    (a, va, na), (b, vb, nb) = last[:2]
    known = isinstance(na, int) and isinstance(nb, int)
    said = difference_text("kNN accuracy", va, na if known else QUERY_TILES, vb, nb if known else QUERY_TILES)
    if not known and not said.startswith("within noise"):
        said = (f"{said.split(' [')[0]} (its interval is not known: these runs did not record how many tiles "
                "they queried)")
    counts = f"{na} and {nb} query tiles" if known else f"at most {QUERY_TILES} query tiles each"
    baselines = [f"{x:.1%}" if isinstance(x, (int, float)) else "not recorded" for x in chance[:2]]
    # the chart has no majority-class line: a review saw two runs at 27-30 % without the 50 % both sat below
    return (f"Last kNN accuracy, {a} minus {b}: {said} (95 %, {counts}). Always answering the majority class scores "
            f"{baselines[0]} and {baselines[1]}: only above that does the encoder separate the classes. One run per "
            "method: a seed's own spread is not in this interval.")
