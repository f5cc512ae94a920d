"""Fine-tune: a segmentation model from a pretraining run (or a comparison of all methods); its scores, drawn."""
from __future__ import annotations


import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from core import launch
from core.catalog import config_presets, encoder_models
from core.compare import METHODS, CompareConfig
from core.config import SEG_DATASETS, ConfigError, FinetuneConfig, load_config, validate_config
from core.runs import Run
from core.safepaths import PathRefused, resolve_under
from workbench.common import has_records, index_of, pick_run, runs_of, show_error
from workbench.monitor import run_header, watch

st.title("🎯 Fine-tune")
st.caption("Segmentation from a pretrained encoder: the paper's frozen protocol or full fine-tuning, scored on a "
           "held-out split. A comparison runs every method with the same labels and seeds.")


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
    with st.form("ft-form"):
        init = st.selectbox("Encoder from", list(inits), format_func=inits.get, key="ft-init",
                            help="A pretraining run (its encoder) or a shipped encoder checkpoint")
        c1, c2, c3, c4 = st.columns(4)
        arch = c1.selectbox("Architecture", ["deeplabv3plus", "unet", "fpn"],
                            index=index_of(["deeplabv3plus", "unet", "fpn"], base.model.arch), key="ft-arch")
        protocol = c2.radio("Protocol", ["frozen", "full"], index=index_of(["frozen", "full"], base.train.protocol),
                            key="ft-protocol", horizontal=True, help="frozen: only the decoder learns (the paper)")
        data_name = c3.selectbox("Data set", list(SEG_DATASETS), index=index_of(list(SEG_DATASETS), base.data.name),
                                 key="ft-data")
        fraction = c4.number_input("Label fraction", 0.001, 1.0, float(base.data.label_fraction), 0.01,
                                   format="%.3f", key="ft-fraction")
        c1, c2 = st.columns(2)
        root = c1.text_input("Data set folder (not synthetic)", value=base.data.root or "", key="ft-root",
                             help="In its published layout, under the data root")
        table = c2.text_input("Class table (folder sets)", value=base.data.class_table or "", key="ft-table",
                              help="e.g. configs/classes/dubai.yaml")
        c1, c2, c3, c4, c5 = st.columns(5)
        steps = c1.number_input("Steps", 1, 10_000_000, int(base.train.max_steps or 200), key="ft-steps")
        batch = c2.number_input("Batch", 1, 4096, int(base.train.batch_size), key="ft-batch")
        lr = c3.number_input("lr", 0.0, 10.0, float(base.train.lr), format="%.5f", key="ft-lr")
        crop = c4.number_input("Crop (px)", 16, 2048, int(base.data.crop_size), key="ft-crop")
        eval_every = c5.number_input("Validate every", 1, 1_000_000, int(base.train.eval_every), key="ft-eval")
        c1, c2, c3 = st.columns(3)
        tiles = c1.number_input("Synthetic tiles", 2, 1_000_000, int(base.data.num_tiles), key="ft-tiles")
        tile_size = c2.number_input("Tile size", 16, 4096, int(base.data.tile_size), key="ft-tile-size")
        name = c3.text_input("Run name", value=base.name or "", key="ft-name")
        go = st.form_submit_button("🚀 Launch fine-tuning", type="primary")
    if not go:
        return
    try:
        raw = base.model_dump(mode="json")
        raw["name"] = name.strip() or None
        raw["model"].update(arch=arch, init=init)
        raw["data"].update(name=data_name, label_fraction=fraction, crop_size=int(crop), num_tiles=int(tiles),
                           tile_size=int(tile_size),
                           root=str(resolve_under(root)) if root.strip() and data_name != "synthetic" else None,
                           class_table=str(resolve_under(table)) if table.strip() else None)
        raw["train"].update(protocol=protocol, max_steps=int(steps), epochs=None, batch_size=int(batch), lr=lr,
                            eval_every=int(eval_every))
        cfg = validate_config(raw, FinetuneConfig)
        run = launch.launch("finetune", cfg, name=cfg.name or f"finetune-{arch}")
    except (ConfigError, PathRefused, OSError) as err:
        show_error(err, "Not launched")
        return
    st.session_state["ft-select-next"] = run.id
    st.success(f"Launched {run.id}; it keeps running if you close this tab. Watch it in the next tab.")


def compare_form() -> None:
    presets = config_presets("compare")
    if not presets:
        st.info("No comparison preset in configs/.")
        return
    preset = st.selectbox("Preset", list(presets), key="cmp-preset")
    try:
        base: CompareConfig = load_config(presets[preset], model=CompareConfig)
    except (ConfigError, ValueError) as err:
        show_error(err, f"preset {preset}")
        return
    with st.form("cmp-form"):
        methods = st.multiselect("Methods", list(METHODS), default=base.methods, key="cmp-methods")
        c1, c2, c3 = st.columns(3)
        seeds = c1.number_input("Seeds", 1, 10, len(base.seeds), key="cmp-seeds")
        pre_steps = c2.number_input("Pretraining steps", 1, 1_000_000, 120, key="cmp-pre-steps")
        ft_steps = c3.number_input("Fine-tuning steps", 1, 1_000_000, 80, key="cmp-ft-steps")
        go = st.form_submit_button("🚀 Launch comparison", type="primary")
    if not go:
        return
    try:
        raw = base.model_dump(mode="json")
        raw.update(methods=methods, seeds=list(range(int(seeds))))
        raw["pretrain_overrides"] = [o for o in raw["pretrain_overrides"] if not o.startswith("train.max_steps=")]
        raw["pretrain_overrides"].append(f"train.max_steps={int(pre_steps)}")
        raw["finetune_overrides"] = [o for o in raw["finetune_overrides"] if not o.startswith("train.max_steps=")]
        raw["finetune_overrides"].append(f"train.max_steps={int(ft_steps)}")
        cfg = validate_config(raw, CompareConfig)
        load_config(cfg.pretrain_config, cfg.pretrain_overrides)
        load_config(cfg.finetune_config, cfg.finetune_overrides, FinetuneConfig)
        run = launch.launch("compare", cfg, name=cfg.name)
    except (ConfigError, ValueError, OSError) as err:
        show_error(err, "Not launched")
        return
    st.success(f"Launched {run.id}: its pretraining and fine-tuning runs appear on the Runs page as they start.")


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
    iou = pd.DataFrame({"class": list(result["iou"]), "IoU": [100 * (v if v == v else 0) for v in
                                                               result["iou"].values()]})
    left, right = st.columns(2)
    left.plotly_chart(px.bar(iou, x="class", y="IoU", title=f"Per-class IoU (%), {split}", range_y=[0, 100],
                             color="class"), width="stretch", key=f"iou-{run.id}")
    cm = np.asarray(result["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    names = list(result["iou"])
    fig = px.imshow(100 * norm, x=names, y=names, text_auto=".0f", color_continuous_scale="Blues",
                    labels=dict(x="predicted", y="true", color="% of row"), title="Confusion matrix (% of true class)")
    right.plotly_chart(fig, width="stretch", key=f"cm-{run.id}")


def comparisons() -> None:
    runs = runs_of("compare")
    if not runs:
        st.info("No comparison yet: launch one in the first tab (CPU preset: about 20 minutes on 2 cores).")
        return
    run = pick_run("Comparison", runs, "cmp-run", "")
    if run is None:
        return
    run_header(run)
    summary = run.path / "summary.csv"
    if not summary.exists():
        st.caption("The table appears when every fine-tuning run has finished. Its log so far:")
        st.code(run.log_text()[-4000:] or "(empty)", language="text")
        return
    frame = pd.read_csv(summary)
    st.dataframe(frame, hide_index=True, width="stretch")
    fig = px.bar(frame, x="method", y=100 * frame["miou_mean"], error_y=100 * frame["miou_std"],
                 labels={"y": "mIoU (%)"}, title="mIoU by method (mean ± std over seeds)", color="method")
    st.plotly_chart(fig, width="stretch", key=f"cmp-{run.id}")


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
