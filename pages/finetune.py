"""Fine-tune: a segmentation model from a pretraining run, a linear probe of it, or a comparison of all methods;
their scores, drawn beside a random-encoder baseline (the launch form: ``workbench.seg_form``; the baselines:
``workbench.baseline_view``)."""
from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core.store import launch
from core.store.catalog import config_presets
from core.seg.baseline import scores_of
from core.seg.compare import CompareConfig, check_presets
from core.seg.compare_methods import all_methods, method_overrides
from core.seg.compare_report import label, per_run_text, verdict_text
from core.config import ConfigError, LossConfig, load_config, validate_config
from core.imaging.colours import css_rgb
from core.store.run_state import SHOWN_LIVE
from core.store.runs import NotARunError, Run, open_run, read_json_file
from workbench import baseline_view, seg_form
from workbench.confusion_view import confusion_figure
from workbench.form_errors import number_field
from workbench.segment_view import class_bar_marker, readable_class
from core.seg.scene_role import scored_scenes_text
from workbench.common import (columns_figure, has_records, kept_fragment, kept_keys, literal, metrics_frame,
                              pick_run, runs_of, show_error)
from workbench.monitor import REFRESH_S, run_controls, run_header, watch

st.title("🎯 Fine-tune")
st.caption("Segmentation from a pretrained encoder: the paper's frozen protocol, full fine-tuning or a linear probe, "
           "scored on a held-out split (whole scenes) beside a random encoder trained the same way. A comparison "
           "crosses methods with pretraining and evaluation seeds and says whether a FALSE gain is more than noise.")


def _replace(overrides: list[str], key: str, value: Any) -> list[str]:
    return [o for o in overrides if not o.startswith(f"{key}=")] + [f"{key}={value}"]


COMPARE_FIELDS = ("cmp-methods", "cmp-pseeds", "cmp-seeds", "cmp-pre-steps", "cmp-probe-epochs", "cmp-ft-steps",
                  "cmp-tau-plus")


def _forget_compare_fields() -> None:
    """A new preset fills the form with its own methods, seeds and lengths (kept values would launch the old one's)."""
    for key in COMPARE_FIELDS:
        st.session_state.pop(key, None)


def compare_form() -> None:
    presets = config_presets("compare")
    if not presets:
        st.info("No comparison preset in configs/.")
        return
    names = list(presets)
    preset = st.selectbox("Preset", names, key="cmp-preset", on_change=_forget_compare_fields,
                          index=names.index("compare_cpu") if "compare_cpu" in names else 0,
                          help="compare_cpu runs anywhere (synthetic data); compare_dglc_cpu (FALSE vs its base) and "
                               "compare_fn_cpu (detectors x treatments, DCL, the label oracle) need the DeepGlobe scenes")
    try:
        base: CompareConfig = load_config(presets[preset], model=CompareConfig)
    except (ConfigError, ValueError) as err:
        show_error(err, f"preset {preset}")
        return
    how = {"probe": "a linear probe of the frozen encoder, tested on whole held-out scenes",
           "finetune": "the fine-tuning preset, tested on whole held-out scenes"}[base.eval]
    st.caption(f"Evaluation: {how}. Every FALSE variant is paired with its base method by pretraining seed; the "
               "table gives the mean difference with a 95 % interval and says \"within noise\" when it holds 0.")
    # outside the form: the fields below follow the pick (DCL's prior shows only when a DCL method is picked)
    methods = st.multiselect(
        "Methods", all_methods(), default=base.methods, key="cmp-methods", format_func=label,
        help="The paper's methods, DCL (debiased loss, detects nothing) and every detector x treatment: a "
             "detector picks the likely false negatives (FNSD; nearest: the encoder's own most similar; support: "
             "FNC's extra views; oracle: same label class, reads labels, the ceiling), a treatment says what the "
             "loss does with them (FNCC calibrates; eliminate drops them; attract counts them as positives). "
             "Each is read against its base method (SimCLR or MoCo v2) with a paired interval.")
    with st.container(border=True, key="cmp-form"):
        c1, c2, c3, c4 = st.columns(4)
        pseeds = number_field(c1, "Pretraining seeds", 2, 20, len(base.pretrain_seeds), key="cmp-pseeds",
                              help="At least 2: the interval of a FALSE gain is over pretraining seeds")
        seeds = number_field(c2, "Evaluation seeds", 1, 10, len(base.seeds), key="cmp-seeds")
        pre_steps = number_field(c3, "Pretraining steps", 1, 1_000_000, _steps(base.pretrain_overrides, 120),
                                 key="cmp-pre-steps")
        if base.eval == "probe":
            eval_len = number_field(c4, "Probe epochs", 1, 10_000, _value(base.probe_overrides, "train.epochs", 30),
                                    key="cmp-probe-epochs")
        else:
            eval_len = number_field(c4, "Fine-tuning steps", 1, 1_000_000, _steps(base.finetune_overrides, 80),
                                    key="cmp-ft-steps")
        preset_prior = _float(base.pretrain_overrides, "loss.tau_plus", LossConfig.model_fields["tau_plus"].default)
        prior = preset_prior
        if any("loss.name=dcl" in (method_overrides(m) or []) for m in methods):
            prior = number_field(st.columns(4)[0], "DCL's class prior τ+", 0.01, 0.99, preset_prior, step=0.01,
                                 format="%.2f", key="cmp-tau-plus",
                                 help="Read by the DCL methods only: the share of a batch's negatives assumed to be "
                                      "of the anchor's class (Chuang et al. 2020).")
        go = st.button("🚀 Launch comparison", type="primary", key="cmp-launch")
    if not go:
        return
    eval_label = "Probe epochs" if base.eval == "probe" else "Fine-tuning steps"
    problems = compare_form_problems(methods, {"Pretraining seeds": (pseeds, 2), "Evaluation seeds": (seeds, 1),
                                               "Pretraining steps": (pre_steps, 1), eval_label: (eval_len, 1)})
    if problems:  # every wrong field at once, in the form's words (the config would name one, in its own)
        st.error("Not launched:\n" + "\n".join(f"- {p}" for p in problems), icon="🚫")
        return
    try:
        raw = base.model_dump(mode="json")
        raw.update(methods=methods, pretrain_seeds=list(range(int(pseeds))), seeds=list(range(int(seeds))))
        raw["pretrain_overrides"] = _replace(raw["pretrain_overrides"], "train.max_steps", int(pre_steps))
        if round(float(prior), 4) != round(preset_prior, 4):  # the preset's own runs stay exactly as written
            raw["pretrain_overrides"] = _replace(raw["pretrain_overrides"], "loss.tau_plus", round(float(prior), 4))
        if base.eval == "probe":
            raw["probe_overrides"] = _replace(raw["probe_overrides"], "train.epochs", int(eval_len))
        else:
            raw["finetune_overrides"] = _replace(raw["finetune_overrides"], "train.max_steps", int(eval_len))
        cfg = validate_config(raw, CompareConfig)
        check_presets(cfg)
        run = launch.launch("compare", cfg, name=cfg.name)
    except (ConfigError, ValueError, OSError) as err:
        show_error(err, "Not launched")
        return
    st.success(f"Launched {run.id}: its pretraining runs appear on the Runs page as they start; its table "
               "fills in on the Comparisons tab when every unit has finished.")


def compare_form_problems(methods: list[str], counts: dict[str, tuple[Any, int]]) -> list[str]:
    """What is wrong with the comparison form, field by field: no method, or a count under its least value (``counts``:
    label -> (typed value, least))."""
    problems = [] if methods else ["Methods: pick at least one"]
    for name, (typed, least) in counts.items():
        if typed is None or typed < least:
            why = " (a paired interval needs them)" if name == "Pretraining seeds" else ""
            problems.append(f"{name}: at least {least}{why}, got {'nothing' if typed is None else f'{typed:g}'}")
    return problems


def _value(overrides: list[str], key: str, default: int) -> int:
    return int(_float(overrides, key, default))


def _float(overrides: list[str], key: str, default: float) -> float:
    for o in reversed(overrides):
        if o.startswith(f"{key}="):
            try:
                return float(o.split("=", 1)[1])
            except ValueError:
                return default
    return default


def _steps(overrides: list[str], default: int) -> int:
    return _value(overrides, "train.max_steps", default)


def best_card(run: Run) -> dict[str, Any]:
    """The card of the run's model (``best``), or {} before there is one."""
    return read_json_file(run.checkpoint_dir / "best.json") or {}


def class_colours(card: dict[str, Any]) -> dict[str, str]:
    """Each class's colour as the Segment page draws it (the model card's display colours)."""
    classes = card.get("classes") if isinstance(card.get("classes"), list) else []
    return {str(c.get("name")): css_rgb(c) for c in classes if isinstance(c, dict)}


def scores(run: Run) -> None:
    result, which = scores_of(run)
    if result is None:
        if run.state() in ("failed", "died", "stopped"):  # no "Scores appear ..." under a run that will not go on
            st.caption(f"No scores: the run {run.state()} before it was scored.")
            return
        st.caption(("Scores appear after the first validation." if run.validates() else
                    "Scores appear when the weight average has been tested on the test scenes, at the end of the "
                    "run: it has no validation split.") if run.kind() == "finetune" else
                   "Scores appear when the probe has tested its head on the test scenes.")
        return
    split = result.get("split", which)
    c = st.columns(4)
    c[0].metric(f"mIoU ({split})", f"{100 * result['miou']:.1f} %")
    c[1].metric("Overall accuracy", f"{100 * result['oa']:.1f} %")
    c[2].metric("Kappa", f"{result['kappa']:.3f}")
    c[3].metric("Mean F1", f"{100 * result['mean_f1']:.1f} %")
    if result.get("evaluation_detail"):
        data = run.config().get("data") or {}
        scored = scored_scenes_text(result.get("scenes") or [], data.get(f"{split}_scenes"), name_them=True,
                                    unit=data.get("split_unit"))
        st.caption(f"Scored on {result['evaluation_detail']}" + (f": {scored}" if scored else "") + ".")
    if result.get("not_unseen"):  # an image folder split image by image: its test images' neighbours trained
        note = str(result["not_unseen"])  # starts with a config field (model.init ...): its case kept
        st.warning(literal(note if note.startswith("model.") else note[:1].upper() + note[1:]), icon="⚠️")
    baseline_view.draw(run, result, which)
    card = best_card(run)
    if card.get("selection"):
        st.caption(f"The run's model: {card['selection']}.")
    left, right = st.columns(2)
    colours = class_colours(card) or class_colours({"classes": result.get("class_table")})  # a probe has no card
    left.plotly_chart(iou_figure(result, split, colours), width="stretch", key=f"iou-{run.id}")
    right.plotly_chart(confusion_figure(result), width="stretch", key=f"cm-{run.id}")


def watch_probe(run_path: str) -> None:
    """A probe run, live: state, phases (features, test scenes), the head's loss per epoch, Stop / Resume, scores."""
    try:
        live_now = open_run(run_path).is_live()
    except NotARunError as err:
        show_error(err)
        return

    @kept_fragment(run_every=REFRESH_S if live_now else None)
    def body() -> None:
        try:
            run = open_run(run_path)
        except NotARunError as err:  # deleted meanwhile
            show_error(err)
            return
        state = run_header(run)
        st.caption("A probe's steps are the epochs of its linear head; before them it computes the encoder's "
                   "features once, after them it segments the whole test scenes.")
        run_controls(run, state, "pb")
        frame = metrics_frame(run)
        if not frame.empty and "loss" in frame:
            fig = columns_figure(frame, ["loss"], "Linear head: training loss per epoch", x="epoch")
            fig.update_xaxes(dtick=1 if len(frame) <= 20 else None)
            st.plotly_chart(fig, width="stretch", key=f"pb-loss-{run.id}")
        scores(run)
        if state in SHOWN_LIVE:
            st.caption(f"Live: refreshed every {REFRESH_S:.0f} s")

    body()


def iou_figure(result: dict[str, Any], split: str, colours: dict[str, str]) -> go.Figure:
    """Per-class IoU bars in the Segment page's class colours (graph objects: plotly express costs ~0.1 s a chart
    here, paid on every view)."""
    names = list(result["iou"])
    values = [100 * (v if v == v else 0) for v in result["iou"].values()]  # NaN (class absent) drawn as 0
    fig = go.Figure(go.Bar(x=[readable_class(n) for n in names], y=values,
                           marker=class_bar_marker([colours.get(n, "#1f77b4") for n in names]),
                           hovertemplate="%{x}: %{y:.1f} %<extra></extra>"))
    fig.update_layout(title=f"Per-class IoU (%), {split}", yaxis=dict(range=[0, 100], title="IoU"),
                      xaxis_title="class", showlegend=False)
    return fig


def comparison_figure(result: dict[str, Any]) -> go.Figure:
    frame = pd.DataFrame(result["methods"])
    sd = pd.to_numeric(frame["miou_sd"], errors="coerce")  # None: one seed, no bar
    fig = px.bar(frame, x="label", y=100 * frame["miou_mean"], error_y=100 * sd, color="label",
                 labels={"y": "mIoU (%)", "label": ""},
                 title="mIoU by method: mean ± sd over pretraining seeds")
    fig.update_layout(showlegend=False, height=340, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def differences_figure(result: dict[str, Any]) -> go.Figure:
    """Each FALSE variant's paired gain over its base with its 95 % interval; the zero line is 'no effect'."""
    rows = result["differences"]
    labels = [f"{label(d['method'])} vs {label(d['base'])}" for d in rows]
    mean = [d["miou_points"]["mean"] for d in rows]
    low = [d["miou_points"]["low"] for d in rows]
    high = [d["miou_points"]["high"] for d in rows]
    colours = ["#2ca02c" if d["verdict"] == "better" else "#d62728" if d["verdict"] == "worse" else "#7f7f7f"
               for d in rows]
    fig = go.Figure(go.Scatter(
        x=mean, y=labels, mode="markers", marker=dict(size=12, color=colours),
        error_x=dict(type="data", symmetric=False, array=[h - m for h, m in zip(high, mean)],
                     arrayminus=[m - lo for m, lo in zip(mean, low)], thickness=2),
        customdata=[d["verdict"] for d in rows], hovertemplate="%{y}: %{x:+.2f} points (%{customdata})<extra></extra>"))
    fig.add_vline(x=0, line_dash="dash", line_color="grey")
    fig.update_layout(title="FALSE gain (mIoU points, 95 % interval)", height=120 + 50 *
                      len(rows), xaxis_title="Δ mIoU (points)", margin=dict(l=10, r=10, t=40, b=10))
    return fig


def methods_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per method, in percent, as people read such tables."""
    rows = []
    for m in result["methods"]:
        cal = m.get("calibrated_per_run")
        sd = m.get("miou_sd")
        rows.append({"method": m["label"], "runs": m["runs"], "mIoU %": round(100 * m["miou_mean"], 2),
                     "± sd": None if sd is None else round(100 * sd, 2), "OA %": round(100 * m["oa_mean"], 2),
                     "kappa": round(m["kappa_mean"], 3),  # half a pair a run is not none (round() said 0)
                     "treated pairs / run": None if cal is None else float(per_run_text(cal))})
        if m.get("miou_eval_sd") is not None:  # seeds crossed: how far one evaluation seed swings
            rows[-1]["sd over evaluation seeds"] = round(100 * m["miou_eval_sd"], 2)
    return pd.DataFrame(rows)


# every decimal shown, so that "31.5" does not stand beside "31.52" as if measured less finely
METHOD_COLUMNS = {name: st.column_config.NumberColumn(format=f"%.{places}f")
                  for name, places in {"mIoU %": 2, "± sd": 2, "OA %": 2, "kappa": 3}.items()}


def comparisons() -> None:
    runs = runs_of("compare")
    if not runs:
        st.info("No comparison yet: launch one in the first tab (compare_cpu: about 25 minutes on 2 cores; the DGLC "
                "preset: under an hour).")
        return
    run = pick_run("Comparison", runs, "cmp-run", "")
    if run is None:
        return
    result = run.read_json("comparison.json")

    def log_until_the_table(now: Run) -> None:
        if result is None and now.read_json("comparison.json") is not None:
            st.rerun(scope="app")  # every unit has finished: the table is drawn outside this live view
        if result is None:
            st.caption("The table appears here when every unit has finished; Stop keeps the finished units and "
                       "Resume continues from them. Its log so far:")
            st.code(now.log_text()[-4000:] or "(empty)", language="text")

    watch(str(run.path), key="cmp", extra=log_until_the_table)
    if result is None:
        return
    table = run.path / "table.md"
    if result.get("differences"):
        # in the table's words: a tie whose treatment (almost) never acted says so
        verdicts = "; ".join(f"{label(d['method'])}: {verdict_text(d)}" for d in result["differences"])
        st.markdown(f"**Verdicts** ({len(result['config']['pretrain_seeds'])} pretraining seeds): {verdicts}")
    left, right = st.columns(2)
    left.plotly_chart(comparison_figure(result), width="stretch", key=f"cmp-{run.id}")
    if result.get("differences"):
        right.plotly_chart(differences_figure(result), width="stretch", key=f"cmp-diff-{run.id}")
    st.dataframe(methods_table(result), hide_index=True, width="stretch", column_config=METHOD_COLUMNS)
    if table.is_file():
        with st.expander("The table as Markdown (with the data splits and the command)"):
            st.markdown(table.read_text())


KINDS = {**seg_form.MODES, "compare": "Comparison of methods"}
# the kind picked, the comparison form and the open tab outlive other pages (the page reopened on Launch: a review)
kept_keys(["ft-kind", "cmp-preset", "ft-tab", *COMPARE_FIELDS])
launch_tab, watch_tab, compare_tab = st.tabs(["Launch", "Watch and scores", "Comparisons"], key="ft-tab",
                                             on_change="rerun")
with launch_tab:
    kind = st.radio("Launch", list(KINDS), format_func=KINDS.get, horizontal=True, key="ft-kind",
                    help="Fine-tuning trains a decoder (and, in full fine-tuning, the encoder); a linear probe "
                         "trains a 1x1 convolution on the frozen encoder's features, in minutes")
    seg_form.keep_values(kind)
    if kind in seg_form.MODES:
        seg_form.draw(kind)
    else:
        compare_form()
with watch_tab:
    if "ft-select-next" in st.session_state:
        st.session_state["ft-run"] = st.session_state.pop("ft-select-next")
    runs = sorted(runs_of("finetune") + runs_of("probe"), key=lambda r: r.id, reverse=True)
    chosen = pick_run("Fine-tuning or probe run", runs, "ft-run", "No fine-tuning or probe runs yet.",
                      prefer=lambda r: r.is_live() or has_records(r))
    if chosen is not None:
        if chosen.kind() == "probe":
            watch_probe(str(chosen.path))
        else:
            watch(str(chosen.path), key="ft", extra=scores)  # scores appear in the live view when they are written
with compare_tab:
    comparisons()
