"""Fine-tune: a segmentation model from a pretraining run (or a comparison of all methods); its scores, drawn."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core.store import launch
from core.store.catalog import config_presets, encoder_models
from core.seg.compare import METHODS, CompareConfig, check_presets
from core.seg.compare_report import LABELS, label
from core.config import SEG_DATASETS, ConfigError, FinetuneConfig, choices, load_config, validate_config
from core.imaging.colours import css_rgb
from core.store.runs import Run, read_json_file
from core.imaging.bands import is_rgb
from workbench.form_errors import BANDS_HELP, FormErrors, bands_to_text, text_to_bands
from workbench.common import gpu_processes, has_records, index_of, pick_run, runs_of, show_error
from workbench.monitor import run_header, watch

st.title("🎯 Fine-tune")
st.caption("Segmentation from a pretrained encoder: the paper's frozen protocol or full fine-tuning, scored on a "
           "held-out split (whole scenes). A comparison crosses methods with pretraining and evaluation seeds and says whether "
           "a FALSE gain is more than noise.")


FT_FIELDS = {  # the form's labels and the config fields they set: errors are shown beside them, in these words
    "Architecture": "model.arch", "Protocol": "train.protocol", "Data set": "data.name",
    "Label fraction": "data.label_fraction", "Data set folder (not synthetic)": "data.root",
    "Class table (folder sets)": "data.class_table", "Steps": "train.max_steps", "Batch": "train.batch_size",
    "lr": "train.lr", "Crop (px)": "data.crop_size", "Validate every": "train.eval_every",
    "Synthetic tiles": "data.num_tiles", "Tile size": "data.tile_size", "Run name": "name", "Device": "train.device",
    "Colour jitter": "data.colour_jitter", "Bands": "data.bands", "Average weights from": "train.average_from",
}


def encoder_bands(init: str) -> list[str] | None:
    """The bands an encoder (a pretraining run or a checkpoint) was trained on; None for RGB ones and random."""
    if init == "random":
        return None
    from core.seg.finetune import resolve_init
    from core.ssl.models import checkpoint_bands

    try:
        path = resolve_init(init)
    except Exception:  # noqa: BLE001 - the config's own check says what is wrong with init
        return None
    bands = checkpoint_bands(path) if path is not None else None
    return None if bands is None or is_rgb(bands) else bands


def finetune_form() -> None:
    presets = config_presets("finetune")
    names = list(presets)
    preset = st.selectbox("Preset", names, key="ft-preset")
    try:
        base: FinetuneConfig = load_config(presets[preset], model=FinetuneConfig)
    except ConfigError as err:
        show_error(err, f"preset {preset}")
        return
    encoders = encoder_models()
    inits = {"random": "random (no pretraining)", **{str(e.path.parent.parent) if e.label.startswith("run:")
                                                     else str(e.path): e.label for e in encoders}}
    fe = FormErrors("ft", FT_FIELDS)
    with st.form("ft-form", enter_to_submit=False):
        newest_run = any(e.label.startswith("run:") for e in encoders)  # encoder_models lists the newest first
        init = st.selectbox("Encoder from", list(inits), format_func=inits.get, key="ft-init",
                            index=1 if newest_run else 0,
                            help="A pretraining run (its encoder; the newest first) or a shipped encoder checkpoint")
        c1, c2, c3, c4 = fe.columns(4)
        archs, protocols = choices(FinetuneConfig, "model.arch"), choices(FinetuneConfig, "train.protocol")
        arch = c1.selectbox("Architecture", archs, index=index_of(archs, base.model.arch), key="ft-arch")
        protocol = c2.radio("Protocol", protocols, index=index_of(protocols, base.train.protocol),
                            key="ft-protocol", horizontal=True, help="frozen: only the decoder learns (the paper)")
        data_name = c3.selectbox("Data set", list(SEG_DATASETS), index=index_of(list(SEG_DATASETS), base.data.name),
                                 key="ft-data")
        fraction = c4.number_input("Label fraction", 0.001, 1.0, float(base.data.label_fraction), 0.01,
                                   format="%.3f", key="ft-fraction")
        c1, c2, c3 = fe.columns([2, 2, 1])
        bands_text = c3.text_input("Bands", value=bands_to_text(base.data.bands), key="ft-bands",
                                   placeholder="the encoder's", help=BANDS_HELP + ". Empty: the bands the chosen "
                                   "encoder was pretrained on (RGB for a random one)")
        root = c1.text_input("Data set folder (not synthetic)", value=base.data.root or "", key="ft-root",
                             help="In its published layout, under the data root")
        table = c2.text_input("Class table (folder sets)", value=base.data.class_table or "", key="ft-table",
                              help="e.g. configs/classes/dubai.yaml")
        c1, c2, c3, c4, c5 = fe.columns(5)
        steps = c1.number_input("Steps", 1, 10_000_000, int(base.train.max_steps or 200), key="ft-steps")
        batch = c2.number_input("Batch", 1, 4096, int(base.train.batch_size), key="ft-batch")
        lr = c3.number_input("lr", 0.0, 10.0, float(base.train.lr), format="%.5f", key="ft-lr")
        crop = c4.number_input("Crop (px)", 16, 2048, int(base.data.crop_size), key="ft-crop")
        eval_every = c5.number_input("Validate every", 1, 1_000_000, int(base.train.eval_every), key="ft-eval")
        c1, c2, c3 = fe.columns(3)
        tiles = c1.number_input("Synthetic tiles", 2, 1_000_000, int(base.data.num_tiles), key="ft-tiles")
        tile_size = c2.number_input("Tile size", 16, 4096, int(base.data.tile_size), key="ft-tile-size")
        name = c3.text_input("Run name", value=base.name or "", key="ft-name")
        c1, c2, c3, c4 = fe.columns(4)
        devices = ["auto", "cpu", "cuda"]
        device = c1.selectbox("Device", devices, index=index_of(devices, base.train.device), key="ft-device")
        processes = gpu_processes(c2, "ft-gpus", "fine-tuning")
        jitter = c3.number_input("Colour jitter", 0.0, 4.0, float(base.data.colour_jitter), 0.5, key="ft-jitter",
                                 help="Strength of the photometric distortion: 1 = mild (the default), 0 = none, "
                                 "2-3 when the scenes to segment differ in colour from the training scenes")
        average_from = c4.number_input(
            "Average weights from", 0.0, 0.95, float(base.train.average_from or 0.0), 0.05, key="ft-average",
            help="0: the run's model is the checkpoint with the best validation mIoU. 0.5: the mean of the weights "
            "of every step in the second half of the run (the learning rate holds there), which needs no choice "
            "by a few validation images")
        go = st.form_submit_button("🚀 Launch fine-tuning", type="primary", key=fe.submit_key)
    fe.summary()
    if not go:
        return
    try:
        raw = base.model_dump(mode="json")
        raw["name"] = name.strip() or None
        raw["model"].update(arch=arch, init=init)
        raw["data"].update(name=data_name, label_fraction=fraction, crop_size=int(crop), num_tiles=int(tiles),
                           tile_size=int(tile_size), colour_jitter=float(jitter),
                           root=fe.path(root, "data.root") if data_name != "synthetic" else None,
                           class_table=fe.path(table, "data.class_table"),
                           bands=text_to_bands(bands_text) or encoder_bands(init))
        raw["train"].update(protocol=protocol, max_steps=int(steps), epochs=None, batch_size=int(batch), lr=lr,
                            eval_every=int(eval_every), device=device,
                            average_from=float(average_from) if average_from > 0 else None)
        cfg = fe.checked(validate_config(raw, FinetuneConfig))
        run = launch.launch("finetune", cfg, name=cfg.name or f"finetune-{arch}",
                            processes=processes if device != "cpu" else 1)
    except ConfigError as err:
        fe.refuse(err)
    except OSError as err:
        show_error(err, "Not launched")
        return
    st.session_state["ft-select-next"] = run.id
    st.success(f"Launched {run.id}; it keeps running if you close this tab. Watch it in the next tab.")


def _replace(overrides: list[str], key: str, value: Any) -> list[str]:
    return [o for o in overrides if not o.startswith(f"{key}=")] + [f"{key}={value}"]


def compare_form() -> None:
    presets = config_presets("compare")
    if not presets:
        st.info("No comparison preset in configs/.")
        return
    names = list(presets)
    preset = st.selectbox("Preset", names, key="cmp-preset",
                          index=names.index("compare_cpu") if "compare_cpu" in names else 0,
                          help="compare_cpu runs anywhere (synthetic data); compare_dglc_cpu needs the DeepGlobe scenes")
    try:
        base: CompareConfig = load_config(presets[preset], model=CompareConfig)
    except (ConfigError, ValueError) as err:
        show_error(err, f"preset {preset}")
        return
    how = {"probe": "a linear probe of the frozen encoder, tested on whole held-out scenes",
           "finetune": "the fine-tuning preset, tested on whole held-out scenes"}[base.eval]
    st.caption(f"Evaluation: {how}. Every FALSE variant is paired with its base method by pretraining seed; the "
               "table gives the mean difference with a 95 % interval and says \"within noise\" when it holds 0.")
    with st.form("cmp-form", enter_to_submit=False):
        methods = st.multiselect("Methods", list(METHODS), default=base.methods, key="cmp-methods",
                                 format_func=LABELS.get)
        c1, c2, c3, c4 = st.columns(4)
        pseeds = c1.number_input("Pretraining seeds", 2, 20, len(base.pretrain_seeds), key="cmp-pseeds",
                                 help="At least 2: the interval of a FALSE gain is over pretraining seeds")
        seeds = c2.number_input("Evaluation seeds", 1, 10, len(base.seeds), key="cmp-seeds")
        pre_steps = c3.number_input("Pretraining steps", 1, 1_000_000, _steps(base.pretrain_overrides, 120),
                                    key="cmp-pre-steps")
        if base.eval == "probe":
            eval_len = c4.number_input("Probe epochs", 1, 10_000, _value(base.probe_overrides, "train.epochs", 30),
                                       key="cmp-probe-epochs")
        else:
            eval_len = c4.number_input("Fine-tuning steps", 1, 1_000_000, _steps(base.finetune_overrides, 80),
                                       key="cmp-ft-steps")
        go = st.form_submit_button("🚀 Launch comparison", type="primary")
    if not go:
        return
    try:
        raw = base.model_dump(mode="json")
        raw.update(methods=methods, pretrain_seeds=list(range(int(pseeds))), seeds=list(range(int(seeds))))
        raw["pretrain_overrides"] = _replace(raw["pretrain_overrides"], "train.max_steps", int(pre_steps))
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
    st.success(f"Launched {run.id}: its pretraining runs appear on the Runs page as they start; the table below "
               "fills in when every unit has finished.")


def _value(overrides: list[str], key: str, default: int) -> int:
    for o in reversed(overrides):
        if o.startswith(f"{key}="):
            try:
                return int(float(o.split("=", 1)[1]))
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
    result = run.read_json("test_metrics.json")
    which = "test"
    if result is None:
        result, which = run.read_json("confusion.json"), "best validation"
    if result is None:
        st.caption("Scores appear after the first validation.")
        return
    split = result.get("split", which)
    c = st.columns(4)
    c[0].metric(f"mIoU ({split})", f"{100 * result['miou']:.1f} %")
    c[1].metric("Overall accuracy", f"{100 * result['oa']:.1f} %")
    c[2].metric("Kappa", f"{result['kappa']:.3f}")
    c[3].metric("Mean F1", f"{100 * result['mean_f1']:.1f} %")
    if result.get("evaluation_detail"):
        scenes = result.get("scenes") or []
        st.caption(f"Scored on {result['evaluation_detail']}" + (f": {len(scenes)} scenes" if scenes else "") + ".")
    card = best_card(run)
    if card.get("selection"):
        st.caption(f"The run's model: {card['selection']}.")
    left, right = st.columns(2)
    left.plotly_chart(iou_figure(result, split, class_colours(card)), width="stretch", key=f"iou-{run.id}")
    right.plotly_chart(confusion_figure(result), width="stretch", key=f"cm-{run.id}")


def iou_figure(result: dict[str, Any], split: str, colours: dict[str, str]) -> go.Figure:
    """Per-class IoU bars in the Segment page's class colours (graph objects: plotly express costs ~0.1 s a chart
    here, paid on every view)."""
    names = list(result["iou"])
    values = [100 * (v if v == v else 0) for v in result["iou"].values()]  # NaN (class absent) drawn as 0
    fig = go.Figure(go.Bar(x=names, y=values, marker=dict(color=[colours.get(n, "#1f77b4") for n in names],
                                                           line=dict(color="rgba(128,128,128,0.6)", width=1)),
                           hovertemplate="%{x}: %{y:.1f} %<extra></extra>"))
    fig.update_layout(title=f"Per-class IoU (%), {split}", yaxis=dict(range=[0, 100], title="IoU"),
                      xaxis_title="class", showlegend=False)
    return fig


def confusion_figure(result: dict[str, Any]) -> go.Figure:
    """Rows: true class, as % of the row; the first class at the top, as in a table."""
    cm = np.asarray(result["confusion"], dtype=float)
    norm = 100 * cm / np.maximum(cm.sum(1, keepdims=True), 1)
    names = list(result["iou"])
    fig = go.Figure(go.Heatmap(z=norm, x=names, y=names, colorscale="Blues", texttemplate="%{z:.0f}",
                               colorbar=dict(title="% of row"),
                               hovertemplate="true %{y}, predicted %{x}: %{z:.1f} %<extra></extra>"))
    fig.update_layout(title="Confusion matrix (% of true class)", xaxis_title="predicted",
                      yaxis=dict(title="true", autorange="reversed"))
    return fig


def comparison_figure(result: dict[str, Any]) -> go.Figure:
    frame = pd.DataFrame(result["methods"])
    fig = px.bar(frame, x="label", y=100 * frame["miou_mean"], error_y=100 * frame["miou_sd"], color="label",
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
        rows.append({"method": m["label"], "runs": m["runs"], "mIoU %": round(100 * m["miou_mean"], 2),
                     "± sd": round(100 * m["miou_sd"], 2), "OA %": round(100 * m["oa_mean"], 2),
                     "kappa": round(m["kappa_mean"], 3),
                     "calibrated pairs / run": None if cal is None else round(cal)})
    return pd.DataFrame(rows)


def comparisons() -> None:
    runs = runs_of("compare")
    if not runs:
        st.info("No comparison yet: launch one in the first tab (compare_cpu: about 25 minutes on 2 cores; the DGLC "
                "preset: under an hour).")
        return
    run = pick_run("Comparison", runs, "cmp-run", "")
    if run is None:
        return
    run_header(run)
    result = run.read_json("comparison.json")
    if result is None:
        st.caption("The table appears when every unit has finished; a stopped comparison resumes where it was. "
                   "Its log so far:")
        st.code(run.log_text()[-4000:] or "(empty)", language="text")
        return
    table = run.path / "table.md"
    if result.get("differences"):
        verdicts = ", ".join(f"{label(d['method'])}: {d['verdict']}" for d in result["differences"])
        st.markdown(f"**Verdicts** ({len(result['config']['pretrain_seeds'])} pretraining seeds): {verdicts}")
    left, right = st.columns(2)
    left.plotly_chart(comparison_figure(result), width="stretch", key=f"cmp-{run.id}")
    if result.get("differences"):
        right.plotly_chart(differences_figure(result), width="stretch", key=f"cmp-diff-{run.id}")
    st.dataframe(methods_table(result), hide_index=True, width="stretch")
    if table.is_file():
        with st.expander("The table as Markdown (with the data splits and the command)"):
            st.markdown(table.read_text())


launch_tab, watch_tab, compare_tab = st.tabs(["Launch", "Watch and scores", "Comparisons"])
with launch_tab:
    kind = st.radio("Launch", ["Fine-tuning run", "Comparison of methods"], horizontal=True, key="ft-kind")
    if kind == "Fine-tuning run":
        finetune_form()
    else:
        compare_form()
with watch_tab:
    if "ft-select-next" in st.session_state:
        st.session_state["ft-run"] = st.session_state.pop("ft-select-next")
    chosen = pick_run("Fine-tuning run", runs_of("finetune"), "ft-run", "No fine-tuning runs yet.",
                      prefer=lambda r: r.is_live() or has_records(r))
    if chosen is not None:
        watch(str(chosen.path), key="ft", extra=scores)  # scores appear in the live view when they are written
with compare_tab:
    comparisons()
