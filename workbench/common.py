"""Small pieces every page uses: readable errors, cached models, run pickers, curves.

Pages stay thin: they turn widgets into a core config or call, and draw what comes back. Nothing here trains or
scores; it only adapts core's results to Streamlit.
"""
from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.store.runs import Run, list_runs

F = TypeVar("F", bound=Callable[..., Any])
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
STATE_ICONS = {"starting": "⏳", "running": "🏃", "stopping": "⏹", "completed": "✅", "stopped": "⏸️", "failed": "❌",
               "died": "💀"}


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|$~])")


def literal(text: str) -> str:
    """``text`` as Streamlit markdown shows it verbatim. Why: messages name paths and values ("must be in (0, 1]",
    "$FALSE_WB_DATA", "runs/*_s1"): inside ``:red[...]`` a "]" would end the coloured span, "$...$" would become
    LaTeX and "*" or "_" emphasis."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def show_error(err: BaseException, what: str = "") -> None:
    """One readable line in the page, shown verbatim; the traceback goes to the server's console, not to the user."""
    prefix = f"{what}: " if what else ""
    text = str(err).strip() or type(err).__name__
    st.error(literal(prefix + text), icon="🚫")
    from core.config import ConfigError

    if not isinstance(err, ConfigError):  # a refused setting is the user's to fix, not a bug to trace
        print(traceback.format_exc(), flush=True)


def shows_errors(fn: F) -> F:
    """Wrap a page section (or a fragment, which reruns on its own) so an error becomes st.error."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - the page must show a message, never a traceback
            show_error(err, type(err).__name__)
            return None
    return wrapper  # type: ignore[return-value]


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _seg_model(path: str, mtime: float) -> tuple[Any, dict[str, Any]]:  # noqa: ARG001 - mtime keys the cache
    from core.device import pick_device
    from core.seg.segmodel import load_seg_model

    return load_seg_model(path, device=pick_device())


@st.cache_resource(show_spinner="Loading the data set…", max_entries=4)
def _dataset(data_json: str, root: str) -> Any:  # noqa: ARG001 - the data root only keys the cache
    from core.config import DataConfig
    from core.data import build_dataset

    return build_dataset(DataConfig.model_validate_json(data_json), progress=False)


def dataset_of(data: Any) -> Any:
    """A pretraining data set (a ``DataConfig``), built or generated once per config for the whole server."""
    from core.data import data_root

    return _dataset(data.model_dump_json(), str(data_root()))


def seg_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """A segmentation model and its card, loaded once per file version for the whole server."""
    return _seg_model(str(path), Path(path).stat().st_mtime)


PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"


def gpu_processes(container: Any, key: str, what: str) -> int:
    """How many processes (one per GPU) a launch uses: disabled below 2 GPUs, all of them by default."""
    from core.device import gpu_count

    gpus = gpu_count()
    return int(container.number_input("GPUs (one process each)", 1, max(gpus, 1), max(gpus, 1), key=key,
                                      disabled=gpus < 2, help=f"Data-parallel {what} with torchrun: the batch is "
                                      "split over the GPUs. Several machines: see the README."))


# said beside a page's own long work (Streamlit stops a page's script when its tab goes to another page; the work's
# result is then not kept): a user who left mid-way found the button again and no word why
STAY_NOTE = "leaving this page stops it"
# widget values a visit to another page must not reset (Streamlit drops a widget's value when a run does not draw
# it): the Segment page's model, inference settings and overlay opacities; the Pretrain page's preset and form
# ("pre-": the data source Use filled in too), its data source pick and its two expanders
KEPT_WIDGETS = ("segment_model", "segment_tile", "segment_overlap", "segment_tta", "segment_resample",
                "segment_borders", "segment_max_mp", "opacity_", "pre-", "pretrain-settings", "pretrain-sources-open",
                "pretrain-source-pick", "emb-models", "emb-source", "emb-tiles", "emb-tile-size", "emb-own-tiles",
                "emb-size", "emb-colour", "emb-pairs")  # buttons and chart selections cannot be re-assigned
KEPT_WIDGETS += ("fn-sort-", "fn-steps-", "fn-second-")  # the False negatives page's filters and second run
# kept widgets named one by one, where a prefix would take a button too: the Fine-tune page's forms register theirs
# (``kept_keys``) when first drawn; the run pickers and the Runs page's filters are here from the start (a review lost
# them on every page trip)
KEPT_KEYS: set[str] = {"fn-run", "fn-calibrated", "runs-one", "pretrain-run", "runs-kind", "runs-state", "runs-method",
                       "runs-tags", "runs-text"}


def kept_keys(keys: Iterable[str]) -> None:
    """Keep these widgets' values across pages from now on, in every session (``keep_widget_values``)."""
    KEPT_KEYS.update(keys)


def kept_valid(key: str, options: Sequence[Any], fallback: Any = None) -> str:
    """A kept choice that is still among ``options`` (a run deleted, a filter's value gone): a list keeps its valid
    items, a single value that is gone is replaced by ``fallback`` or else dropped, so the widget starts afresh
    instead of failing. Returns the key. Why a fallback: a dropped value is not sent to the browser, whose box went
    on showing a run filtered away while the page showed another (a review)."""
    if key in st.session_state:
        value = st.session_state[key]
        if isinstance(value, list):
            st.session_state[key] = [v for v in value if v in options]
        elif value not in options:
            if fallback is not None and fallback in options:
                st.session_state[key] = fallback
            else:
                del st.session_state[key]
    return key


def kept_range(key: str, lo: int, hi: int) -> str:
    """A kept slider range inside [lo, hi], else the whole range; a range that reached the old upper end follows a
    live run's growing steps (kept at the old end, it hid every later flag). Returns the key."""
    value, top = st.session_state.get(key), st.session_state.get(f"{key}:hi")
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and lo <= value[0] <= value[1] <= hi):
        value = (lo, hi)
    elif value[1] == top and hi > top:
        value = (value[0], hi)
    # assigned every run: a slider of another range is another widget, which takes a value set here, not its own
    st.session_state[key], st.session_state[f"{key}:hi"] = tuple(value), hi
    return key


def kept_default(key: str, value: Any) -> str:
    """A kept widget's first value, set in session state instead of the widget's ``value=``: Streamlit warns about a
    widget drawn with a value of its own whose key ``keep_widget_values`` also sets. Returns the key."""
    st.session_state.setdefault(key, value)
    return key


def keep_widget_values() -> None:
    """Re-assign the kept widgets' values before any page runs, so they outlive runs of other pages (the router
    calls this on every run)."""
    for key in list(st.session_state):
        if isinstance(key, str) and (key.startswith(KEPT_WIDGETS) or key in KEPT_KEYS):
            st.session_state[key] = st.session_state[key]


def fragment_rerun() -> bool:
    """Whether this run is a fragment's own rerun (not the page's): then the kept widgets' values must be kept again
    (``keep_widget_values``), since such a run forgets the values of widgets it does not draw."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def kept_fragment(run_every: float | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``st.fragment`` whose own reruns keep the page's kept widget values (``KEPT_WIDGETS``). Why: a fragment's
    rerun forgets the values of widgets it does not draw, so watching a live run (a fragment every 2 s) or picking a
    detector closed the Pretrain page's Settings and lost its picks at the next page trip."""
    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def body(*args: Any, **kwargs: Any) -> Any:
            if fragment_rerun():
                keep_widget_values()
            return func(*args, **kwargs)
        return st.fragment(body, run_every=run_every)
    return wrap


def go_to(page: str) -> None:
    """Switch to ``pages/<page>.py`` (paths are resolved against the router's folder, hence the absolute one)."""
    st.switch_page(str(PAGES_DIR / f"{page}.py"))


def index_of(options: Sequence[Any], value: Any) -> int:
    """Where a config's value sits among a widget's options (the first option when it is not there)."""
    return list(options).index(value) if value in options else 0


def runs_of(kind: str | None = None) -> list[Run]:
    """Runs on disk, newest first, optionally of one kind."""
    runs = list(reversed(list_runs()))
    return [r for r in runs if kind is None or r.kind() == kind]


def pick_run(label: str, runs: Sequence[Run], key: str, empty: str,
             prefer: Callable[[Run], bool] | None = None) -> Run | None:
    """A select box of runs (newest first); shows ``empty`` as info when there are none.

    The first choice is the run named by ``?run=`` in the address, else the one picked before (kept across pages),
    else the newest run that ``prefer`` likes (a live run, one with flagged pairs, ...), else the newest."""
    if not runs:
        st.info(empty)
        return None
    ids = [r.id for r in runs]
    wanted = st.query_params.get("run")
    if wanted in ids and st.session_state.get(f"{key}:asked") != wanted:  # an address naming a run wins, once
        st.session_state[f"{key}:asked"] = st.session_state[key] = wanted
    elif wanted and wanted not in ids:  # a link to a run deleted, mistyped, or of another kind: said, not hidden
        st.warning(f"The address names run {literal(str(wanted))}, which is not among the runs here: showing another.",
                   icon="🔎")
    liked = [n for n, r in enumerate(runs) if prefer(r)] if prefer is not None else []
    first = liked[0] if liked else 0
    kept_valid(key, ids, ids[first])  # the kept choice (``KEPT_KEYS``), unless its run is gone or filtered away
    # Labels are the bare ids: a label that changed with the run's state would reset the choice.
    if key in st.session_state:  # no index beside a kept value (Streamlit warns of two defaults)
        chosen = st.selectbox(label, ids, key=key)
    else:
        chosen = st.selectbox(label, ids, index=first, key=key)
    return runs[ids.index(chosen)]


def runs_frame(runs: Sequence[Run]) -> pd.DataFrame:
    rows = [r.summary() for r in runs]
    frame = pd.DataFrame(rows, columns=["run", "kind", "state", "method", "encoder", "data", "step", "total_steps",
                                        "progress", "metric", "value", "started", "error"])
    frame["started"] = pd.to_datetime(frame["started"], unit="s", errors="coerce")
    frame["state"] = [f"{STATE_ICONS.get(s, '')} {s}" for s in frame["state"]]
    frame["value"] = metric_values_text(frame["metric"], frame["value"])  # an mIoU in percent, as every table
    return text_cells(frame)


def text_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values of text columns shown as a dash, not as "None" (numbers stay empty cells)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].astype(object).where(out[col].notna(), "—")
    return out


def curves_figure(series: dict[str, pd.DataFrame], key: str, title: str, x: str = "step",
                  log_y: bool = False) -> go.Figure:
    """One line per run (or per name) of column ``key`` against ``x``."""
    fig = go.Figure()
    for n, (name, frame) in enumerate(series.items()):
        if key in frame and frame[key].notna().any():
            part = frame[[x, key]].dropna()
            mode = "lines+markers" if len(part) < 30 else "lines"  # a run with one record still shows a dot
            fig.add_trace(go.Scatter(x=part[x], y=part[key], mode=mode, name=name,
                                     line=dict(color=COLOURS[n % len(COLOURS)])))
    fig.update_layout(title=title, height=280, margin=dict(l=10, r=10, t=40, b=10), xaxis_title=x,
                      legend=dict(orientation="h", y=-0.3), showlegend=len(series) > 1)
    if log_y:
        fig.update_yaxes(type="log")
    else:
        _one_point_axes(fig)
    if key == "lr" or set(series) == {"lr"}:  # plotly's SI ticks read "300μ" on one chart and "0.0005" on another
        fig.update_yaxes(tickformat="~g", exponentformat="e")
    return fig


def _one_point_axes(fig: go.Figure) -> None:
    """Axes that make sense for a single value (plotly's own pad a lone point to e.g. mIoU -1..4): the step
    with its neighbours, the value between 0 and twice itself."""
    xs = {float(v) for t in fig.data for v in (t.x if t.x is not None else [])}
    ys = {float(v) for t in fig.data for v in (t.y if t.y is not None else [])}
    if len(xs) == 1:
        (x0,) = xs
        fig.update_xaxes(range=[x0 - 1, x0 + 1], dtick=1)
    if len(ys) == 1:
        (y0,) = ys
        fig.update_yaxes(range=[min(0.0, 2 * y0), max(0.0, 2 * y0)] if y0 else [0, 1])


BASE_RATE_MARGIN = 110  # px kept on the right of a figure for the base rate's label


def base_rate_line(fig: go.Figure, rate: float, note: str = "") -> None:
    """The base rate as a dashed line, its label in the right margin: written on the plot it covered the first point
    (or bar)."""
    fig.add_hline(y=rate, line_dash="dash", line_color="grey")
    fig.add_annotation(x=1, xref="paper", xanchor="left", y=rate, yref="y", showarrow=False, align="left",
                       text=f"base rate {rate:.2f}" + (f"<br>{note}" if note else ""), font=dict(color="grey"))


def columns_figure(frame: pd.DataFrame, keys: Sequence[str], title: str, x: str = "step",
                   log_y: bool = False) -> go.Figure:
    """One line per column of one run's records."""
    return curves_figure({k: frame.rename(columns={k: "_y"}) for k in keys if k in frame}, "_y", title, x, log_y)


def pair_counts_figure(counts: pd.DataFrame, treatment: str, log_y: bool = False) -> go.Figure:
    """Flagged pairs per step and, for FNCC, the calibrated ones. Other treatments (eliminate, attract) act on every
    flag, so a second line would only hide the first: one line, its title says so. FNCC's calibrated line, where it
    lies on the flagged one (every flag calibrated), is dashed so both show."""
    if treatment != "fncc":
        return columns_figure(counts, ["flagged"], f"Flagged pairs per step (each one treated: {treatment})",
                              log_y=log_y)
    fig = columns_figure(counts, ["flagged", "calibrated"], "Flagged and calibrated pairs per step", log_y=log_y)
    if {"flagged", "calibrated"} <= set(counts) and len(counts) and counts["flagged"].equals(counts["calibrated"]):
        for trace in fig.data:
            if trace.name == "calibrated":
                trace.line.dash, trace.line.width = "dash", 3
        fig.update_layout(title="Flagged and calibrated pairs per step (every flag calibrated: the lines coincide)")
    return fig


def metric_values_text(metrics: Sequence[Any], values: Sequence[Any]) -> list[str]:
    """A run's final metric as every table gives it: a loss as a number, an mIoU in percent (0.3759 beside 37.6 %
    elsewhere read as two figures); a dash when there is none."""
    out = []
    for m, v in zip(metrics, values):
        try:
            x = float(v)
        except (TypeError, ValueError):  # none yet, or already text
            out.append("—" if v is None or str(v).strip() == "" else str(v))
            continue
        out.append("—" if x != x else f"{100 * x:.1f} %" if "mIoU" in str(m) else f"{x:.0f}"
                   if str(m).startswith("units done") else f"{x:.4f}")
    return out


def has_records(run: Run) -> bool:
    """The run logged at least one training record (it has curves to draw)."""
    p = run.path / "metrics.jsonl"
    return p.is_file() and p.stat().st_size > 0


def metrics_frame(run: Run) -> pd.DataFrame:
    """A run's training records (validation rows of fine-tuning runs left out)."""
    frame = pd.DataFrame(run.metrics())
    if "split" in frame:
        frame = frame[frame["split"].isna()]
    return frame


def records_version(run: Run) -> tuple[tuple[int, int], ...]:
    """Size and mtime of ``metrics.jsonl`` and ``fns.jsonl``: what the curves are drawn from. Caches key on it, so
    a growing run is read again, and so is one a resume truncated (its mtime changes even at an equal size)."""
    out = []
    for p in (run.path / "metrics.jsonl", run.path / "fns.jsonl"):
        try:
            stat = p.stat()
            out.append((stat.st_size, stat.st_mtime_ns))
        except OSError:
            out.append((-1, 0))
    return tuple(out)


@st.cache_data(max_entries=32, show_spinner=False)
def _pair_counts(path: str, version: tuple) -> pd.DataFrame:  # noqa: ARG001 - the records' version keys the cache
    return pd.DataFrame(Run(Path(path)).pair_counts(), columns=["step", "flagged", "calibrated"])


@st.cache_data(max_entries=256, show_spinner=False)
def _logged(path: str, version: tuple) -> frozenset[str]:  # noqa: ARG001 - the records' version keys the cache
    frame = curve_frame(Run(Path(path)))
    return frozenset(c for c in frame.columns if frame[c].notna().any())


def logged_values(run: Run) -> frozenset[str]:
    """The values a run's curves hold at least one point of, read again only when its records changed (the Runs
    page asks for every listed run on every rerun)."""
    return _logged(str(run.path), records_version(run))


def pairs_frame(run: Run) -> pd.DataFrame:
    """Flagged and calibrated pairs of every step, read again only when ``fns.jsonl`` or the records changed."""
    return _pair_counts(str(run.path), records_version(run))


def show_treatment(run: Run, counts: pd.DataFrame | Sequence[Any], top_cos_pos: float | None = None) -> None:
    """A pretraining run's treatment (FALSE's FNCC, eliminate or attract) from its flagged and treated pairs per
    step (``counts``: step, flagged, calibrated, i.e. treated): its figures in a caption, or a warning with the plain
    sentence and the advice when it is, in effect, its base method (``core.analysis.fn_scoring.treatment_effect``;
    ``top_cos_pos``: the highest anchor-positive cosine of its flags, for why nothing passed the gate). Nothing for
    a run without a detector or before its first step. The one drawing of it: the live view (``monitor``) and the
    False negatives page."""
    from core.analysis.fn_scoring import treatment_effect

    effect = treatment_effect(run.config(), counts, run.recorded_step(), top_cos_pos=top_cos_pos)
    if effect is None or effect.steps == 0:
        return
    verdict = effect.verdict()
    behind = records_behind(run, effect.steps)
    if verdict:
        st.warning(" ".join(filter(None, [verdict, behind, effect.advice()])), icon="⚖️")
    else:
        st.caption(" ".join(filter(None, [effect.caption(), behind])))


def records_behind(run: Run, counted: int) -> str | None:
    """While a run is live its status step runs ahead of the flags it has written (at its logged steps): the
    review read "never fired in 10 steps" beside "step 14" as a miscount. Says where the count stops."""
    step = run.status().get("step") if run.is_live() else None
    if not isinstance(step, int) or step <= counted:
        return None
    return (f"(Counted over steps 1-{counted}: the run is at step {step}, and the flags of the steps since are "
            "written at its next logged step.)")  # "written so far, of 14" read hard (a review)


AVERAGE_MIOU = "weight average"  # curve_frame's column for the validation mIoU of a run's averaged weights


def curve_frame(run: Run) -> pd.DataFrame:
    """Training records plus, for fine-tuning runs, the validation mIoU at its steps (column ``miou``) and that of
    the weight average at the end (column ``AVERAGE_MIOU``: a point of its own, not a jump of the curve)."""
    frame = metrics_frame(run)
    val = pd.DataFrame([m for m in run.metrics() if m.get("split") == "val"])
    if not val.empty and "miou" in val:
        averaged = val["model"] == "weight average" if "model" in val else pd.Series(False, index=val.index)
        parts = [frame, val.loc[~averaged, ["step", "miou"]]]
        if averaged.any():
            parts.append(val.loc[averaged, ["step", "miou"]].rename(columns={"miou": AVERAGE_MIOU}))
        frame = pd.concat(parts, ignore_index=True)
    return frame


PICTURE_LABELS = {"true": "true colour (R, G, B)", "false": "false colour (NIR, R, G: vegetation red)"}


def pick_picture(bands: Sequence[str], key: str) -> str:
    """How to show tiles of these bands: true colour, or false colour (NIR, R, G) where there is a NIR band; a
    radio only when there is a choice (``core.imaging.band_preview.preview_modes``)."""
    from core.imaging.band_preview import preview_modes

    modes = preview_modes(bands)
    if len(modes) == 1:
        return modes[0]
    return st.radio("Show tiles as", modes, format_func=PICTURE_LABELS.get, horizontal=True, key=key)


def difference_text(name: str, value: float, n: int, other_value: float, other_n: int,
                    paired: tuple[Sequence[int], Sequence[int]] | None = None) -> str:
    """The difference to the other map, with its 95 % interval where it is a share of tiles (kNN accuracy): Newcombe's
    paired interval when both answered the same tiles (``paired``: each map's right/wrong per tile,
    ``stats.paired_shares_difference``), else his interval of two unpaired shares, on the cautious side; and
    "within noise" when it holds 0."""
    from core.analysis.stats import paired_shares_difference, shares_difference

    diff = value - other_value
    if not name.endswith("NN accuracy") or n < 1 or other_n < 1:
        return f"{diff:+.3f} (no interval)"
    _, low, high = (paired_shares_difference(*paired) if paired is not None
                    else shares_difference(value, n, other_value, other_n))
    # the verdict first and nothing after the numbers: a half-width column cut "within noise" off, later " vs the
    # other" (the caption under the metrics says what the difference is to)
    return ("within noise: " if low <= 0 <= high else "") + f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]"


def tab_names(names: list[str]) -> list[str]:
    """Tab labels for files that may share a name (image_part_001.jpg of tile 2 and of tile 3): a repeated name is
    numbered in upload order, "image_part_001.jpg (2)", so the tabs can be told apart."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if names.count(name) == 1 else f"{name} ({seen[name]})")
    return out
