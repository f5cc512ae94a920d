"""Pretrain: every setting in one form, checked by core's config before anything starts; then the run, live."""
from __future__ import annotations


import streamlit as st

from core.store import launch
from core.store.catalog import config_presets, encoder_models
from core.config import (ENCODERS, PRETRAIN_DATASETS, ConfigError, PretrainConfig, choices, load_config,
                         validate_config)
from workbench.form_errors import BANDS_HELP, FormErrors, bands_to_text, text_to_bands
from workbench.sources_view import data_sources
from core.store.sources import SourceInfo
from workbench.common import gpu_processes, has_records, index_of, pick_run, runs_of, show_error
from workbench.monitor import watch

DATASET_LABELS = {"synthetic": "synthetic (generated, labeled)", "folder": "folder of my images",
                  "deepglobe": "DeepGlobe land cover (DGLC)", "potsdam": "ISPRS Potsdam", "vaihingen": "ISPRS Vaihingen",
                  "loveda": "LoveDA"}

st.title("🧪 Pretrain")
st.caption("SimCLR or MoCo v2, with or without FALSE (FNSD flags likely false negatives, FNCC calibrates them). "
           "The run goes on in the background: close the tab, come back, it is still there.")

runs = runs_of("pretrain")
flash = st.session_state.pop("pretrain-flash", None)
if flash:
    st.success(flash)
if "pretrain-select-next" in st.session_state:  # a run just launched: watch it (set before the widget exists)
    st.session_state["pretrain-run"] = st.session_state.pop("pretrain-select-next")
if runs:
    st.subheader("Watch a run")
    chosen = pick_run("Pretraining run", runs, "pretrain-run", "", prefer=lambda r: r.is_live() or has_records(r))
    if chosen is not None:
        watch(str(chosen.path), key="pretrain")
    st.divider()
else:
    st.info("No pretraining runs yet: set one up below and launch it.")

st.subheader("New run")
presets = config_presets("pretrain")
names = list(presets)
preset = st.selectbox("Start from a preset", names, index=names.index("demo_cpu") if "demo_cpu" in names else 0,
                      key="pre-preset", help="Files in configs/; every value below can be changed.")
try:
    base: PretrainConfig = load_config(presets[preset])
except ConfigError as err:
    show_error(err, f"preset {preset}")
    base = PretrainConfig()


FIELDS = {  # the form's labels and the config fields they set: errors are shown beside them, in these words
    "Method": "method", "FALSE (FNSD + FNCC)": "loss.name", "Run name": "name", "alpha (FNCC)": "loss.alpha",
    "threshold (FNSD)": "loss.threshold", "temperature": "loss.temperature", "selection": "loss.selection",
    "top-k": "loss.topk", "Encoder": "model.encoder", "Projection dim": "model.proj_dim",
    "Projection hidden": "model.proj_hidden", "MoCo queue": "model.queue_size", "Data set": "data.name",
    "Synthetic tiles": "data.num_tiles", "Tile size (px)": "data.tile_size", "View size (px)": "data.image_size",
    "Data folder (all but synthetic)": "data.root", "Bands": "data.bands", "Class table (folder only, optional)": "data.class_table",
    "Pretrain on the scenes of": "data.pretrain_splits", "Validation share of scenes": "data.val_fraction",
    "Test share of scenes": "data.test_fraction", "Batch size": "train.batch_size", "Steps": "train.max_steps",
    "Epochs": "train.epochs", "Optimizer": "train.optimizer", "Base lr (batch 256)": "train.lr",
    "Weight decay": "train.weight_decay", "Warm-up steps": "train.warmup_steps",
    "Checkpoint every": "train.ckpt_every", "Seed": "seed", "Device": "train.device", "Precision": "train.precision",
    "Log every (steps)": "train.log_every", "kNN monitor every (steps)": "train.knn_every", "Symmetric FNCC": "loss.symmetric",
    "MoCo momentum": "model.moco_momentum", "SGD/LARS momentum": "train.momentum",
    "Crop scale min": "data.crop_scale_min", "Colour jitter strength": "data.color_strength",
    "Blur probability": "data.blur_prob", "Data seed": "data.seed", "Encoder starts from": "model.weights",
    "channels_last (GPU)": "train.channels_last",
}
fe = FormErrors("pretrain", FIELDS)


def k(name: str) -> str:
    """Widget keys depend on the preset, so picking another preset resets the form to its values."""
    return f"pre-{preset}-{name}"


def use_source(source: SourceInfo) -> None:
    """A data source's Use button: the form below reads that folder (its layout picks the data set kind)."""
    st.session_state[k("data")] = source.kind
    st.session_state[k("folder")] = source.path
    st.session_state[k("bands")] = bands_to_text(source.bands)
    bands = f" on its bands {', '.join(source.bands)}" if source.bands else ""
    st.session_state["pretrain-source-flash"] = ("success", f"The form below now pretrains on {source.path}{bands} "
                                                            "(Settings: Data set, Data folder and Bands).")


data_sources("pretrain", use=use_source, use_label="Use for pretraining")


# the expander tracks its state (a rerun when folded), so a visit to another page finds it as it was left
with st.expander("Settings", expanded=not runs, key="pretrain-settings", on_change="rerun"), \
        st.form("pretrain-form", enter_to_submit=False):
    st.subheader("Method")
    c1, c2, c3 = fe.columns(3)
    methods = choices(PretrainConfig, "method")
    method = c1.radio("Method", methods, index=index_of(methods, base.method), key=k("method"),
                      format_func={"simclr": "SimCLR", "moco": "MoCo v2"}.get, horizontal=True)
    use_false = c2.toggle("FALSE (FNSD + FNCC)", value=base.loss.name == "false", key=k("false"),
                          help="Off: plain InfoNCE")
    run_name = c3.text_input("Run name", value=base.name or "", key=k("name"),
                             help="A time stamp is put in front; two runs never share a folder")
    c1, c2, c3, c4, c5 = fe.columns(5)
    alpha = c1.number_input("alpha (FNCC)", 0.0, 1.0, float(base.loss.alpha), 0.05, key=k("alpha"),
                            help="How far a calibrated pair is pulled towards being a positive")
    threshold = c2.number_input("threshold (FNSD)", 0.0, 1.0, float(base.loss.threshold), 0.05, key=k("threshold"),
                                help="Cosine above which a flagged pair is calibrated; must be in (0, 1]")
    temperature = c3.number_input("temperature", 0.0, 10.0, float(base.loss.temperature), 0.05, format="%.3f",
                                  key=k("temperature"))
    selections = choices(PretrainConfig, "loss.selection")
    selection = c4.selectbox("selection", selections, index=index_of(selections, base.loss.selection),
                             key=k("selection"))
    topk = c5.number_input("top-k", 1, 4096, int(base.loss.topk), key=k("topk"))

    st.subheader("Model and data")
    c1, c2, c3, c4 = fe.columns(4)
    encoder = c1.selectbox("Encoder", list(ENCODERS), index=index_of(list(ENCODERS), base.model.encoder),
                           key=k("encoder"))
    proj_dim = c2.number_input("Projection dim", 1, 4096, int(base.model.proj_dim), key=k("proj_dim"))
    proj_hidden = c3.number_input("Projection hidden", 1, 8192, int(base.model.proj_hidden), key=k("proj_hidden"))
    queue = c4.number_input("MoCo queue", 1, 1 << 20, int(base.model.queue_size), key=k("queue"))
    c1, c2, c3, c4 = fe.columns(4)
    data_name = c1.selectbox("Data set", list(PRETRAIN_DATASETS), index=index_of(list(PRETRAIN_DATASETS),
                             base.data.name), key=k("data"), format_func=DATASET_LABELS.get,
                             help="Labeled sets keep their labels to score the flags (the loss never sees them)")
    num_tiles = c2.number_input("Synthetic tiles", 2, 1_000_000, int(base.data.num_tiles), key=k("tiles"))
    tile_size = c3.number_input("Tile size (px)", 16, 4096, int(base.data.tile_size), key=k("tile_size"))
    image_size = c4.number_input("View size (px)", 16, 1024, int(base.data.image_size), key=k("image_size"))
    c1, c2, c3 = fe.columns([2, 2, 1])
    bands_text = c3.text_input("Bands", value=bands_to_text(base.data.bands), key=k("bands"),
                               placeholder="R, G, B", help=BANDS_HELP)
    folder = c1.text_input("Data folder (all but synthetic)", value=base.data.root or "", key=k("folder"),
                           help="An image folder, or a data set in its published layout; under the data root or "
                                "the runs root (a preset's own folder is kept as it is)")
    class_table = c2.text_input("Class table (folder only, optional)", value=base.data.class_table or "",
                                key=k("class_table"),
                                help="A YAML table in configs/classes/: makes an images/ + masks/ folder labeled")
    c1, c2, c3 = fe.columns([2, 1, 1])
    pretrain_splits = c1.multiselect(
        "Pretrain on the scenes of", ["train", "val", "test"], default=base.data.pretrain_splits, key=k("splits"),
        help="Labeled sets are split by scene exactly as fine-tuning splits them; keep test out so that test "
             "scenes never reach the encoder")
    val_fraction = c2.number_input("Validation share of scenes", 0.01, 0.99, float(base.data.val_fraction), 0.01,
                                   key=k("val_fraction"))
    test_fraction = c3.number_input("Test share of scenes", 0.0, 0.99, float(base.data.test_fraction), 0.01,
                                    key=k("test_fraction"))

    st.subheader("Training")
    c1, c2, c3, c4, c5 = fe.columns(5)
    batch = c1.number_input("Batch size", 1, 65536, int(base.train.batch_size), key=k("batch"))
    by = c2.radio("Length in", ["steps", "epochs"], index=1 if base.train.max_steps is None else 0,
                  key=k("by"), horizontal=True)
    steps = c3.number_input("Steps", 1, 10_000_000, int(base.train.max_steps or 100), key=k("steps"))
    epochs = c4.number_input("Epochs", 0.01, 10_000.0, float(base.train.epochs or 1.0), key=k("epochs"))
    optimizers = choices(PretrainConfig, "train.optimizer")
    optimizer = c5.selectbox("Optimizer", optimizers, index=index_of(optimizers, base.train.optimizer), key=k("opt"))
    c1, c2, c3, c4, c5 = fe.columns(5)
    lr = c1.number_input("Base lr (batch 256)", 0.0, 100.0, float(base.train.lr), format="%.5f", key=k("lr"))
    wd = c2.number_input("Weight decay", 0.0, 1.0, float(base.train.weight_decay), format="%.6f", key=k("wd"))
    warmup = c3.number_input("Warm-up steps", 0, 1_000_000, int(base.train.warmup_steps), key=k("warmup"))
    ckpt_every = c4.number_input("Checkpoint every", 1, 1_000_000, int(base.train.ckpt_every), key=k("ckpt"))
    seed = c5.number_input("Seed", 0, 2**31 - 1, int(base.seed), key=k("seed"))
    c1, c2, c3, c4, c5 = fe.columns(5)
    device = c1.selectbox("Device", ["auto", "cpu", "cuda"], index=index_of(["auto", "cpu", "cuda"],
                          base.train.device), key=k("device"))
    precisions = choices(PretrainConfig, "train.precision")
    precision = c2.selectbox("Precision", precisions, index=index_of(precisions, base.train.precision),
                             key=k("prec"))
    log_every = c3.number_input("Log every (steps)", 1, 100_000, int(base.train.log_every), key=k("log"))
    processes = gpu_processes(c4, k("gpus"), "pretraining")
    knn_every = c5.number_input("kNN monitor every (steps)", 0, 1_000_000, int(base.train.knn_every), key=k("knn"),
                                help="kNN accuracy of the encoder's features on held-out labeled tiles, plotted live "
                                     "beside the loss (0 = off; data without labels: off, said in the run's log)")
    st.subheader("Advanced")
    c1, c2, c3, c4, c5 = fe.columns(5)
    symmetric = c1.checkbox("Symmetric FNCC", value=base.loss.symmetric, key=k("symmetric"),
                            help="Also calibrate the mirrored pair (j, i)")
    moco_m = c2.number_input("MoCo momentum", 0.0, 1.0, float(base.model.moco_momentum), 0.001, format="%.4f",
                             key=k("moco_m"))
    sgd_m = c3.number_input("SGD/LARS momentum", 0.0, 0.999, float(base.train.momentum), 0.01, key=k("sgd_m"))
    crop_min = c4.number_input("Crop scale min", 0.01, 1.0, float(base.data.crop_scale_min), 0.05, key=k("crop"))
    color = c5.number_input("Colour jitter strength", 0.0, 2.0, float(base.data.color_strength), 0.1, key=k("color"))
    c1, c2, c3, c4 = fe.columns(4)
    blur = c1.number_input("Blur probability", 0.0, 1.0, float(base.data.blur_prob), 0.1, key=k("blur"))
    data_seed = c2.number_input("Data seed", 0, 2**31 - 1, int(base.data.seed), key=k("data_seed"),
                                help="Which synthetic set, and the seeded split of scenes of a labeled set")
    starts = {"": "random"} | {str(e.path): e.label for e in encoder_models()}
    weights = c3.selectbox("Encoder starts from", list(starts), format_func=starts.get, key=k("weights"),
                           index=index_of(list(starts), base.model.weights or ""))
    channels_last = c4.checkbox("channels_last (GPU)", value=base.train.channels_last, key=k("cl"))
    submitted = st.form_submit_button("🚀 Launch", type="primary", key=fe.submit_key)


def form_config() -> PretrainConfig:
    """The form as a validated config: ConfigError names every wrong field, with the refused paths among them."""
    raw = base.model_dump(mode="json")
    raw.update(method=method, seed=int(seed), name=run_name.strip() or None)
    raw["loss"].update(name="false" if use_false else "info_nce", alpha=alpha, threshold=threshold,
                       temperature=temperature, selection=selection, topk=int(topk), symmetric=symmetric)
    raw["model"].update(encoder=encoder, proj_dim=int(proj_dim), proj_hidden=int(proj_hidden), queue_size=int(queue),
                        moco_momentum=moco_m, weights=weights or None)
    raw["data"].update(crop_scale_min=crop_min, color_strength=color, blur_prob=blur, seed=int(data_seed))
    raw["data"].update(name=data_name, num_tiles=int(num_tiles), tile_size=int(tile_size), image_size=int(image_size),
                       root=fe.path(folder, "data.root", keep=base.data.root) if data_name != "synthetic" else None,
                       class_table=fe.path(class_table, "data.class_table", keep=base.data.class_table)
                       if data_name == "folder" else None,
                       pretrain_splits=pretrain_splits, val_fraction=val_fraction, test_fraction=test_fraction,
                       bands=text_to_bands(bands_text))
    raw["train"].update(momentum=sgd_m, channels_last=channels_last)
    raw["train"].update(batch_size=int(batch), optimizer=optimizer, lr=lr, weight_decay=wd, warmup_steps=int(warmup),
                        ckpt_every=int(ckpt_every), knn_every=int(knn_every), device=device, precision=precision, log_every=int(log_every),
                        max_steps=int(steps) if by == "steps" else None,
                        epochs=float(epochs) if by == "epochs" else None)
    if raw["train"]["warmup_epochs"] is not None and by == "steps":
        raw["train"]["warmup_epochs"] = None
    return fe.checked(validate_config(raw))


fe.summary()
if submitted:
    try:
        cfg = form_config()
        run = launch.launch("pretrain", cfg, name=cfg.name or f"{cfg.method}-{cfg.loss.name}",
                            processes=int(processes) if device != "cpu" else 1)
    except ConfigError as err:
        fe.refuse(err)
    except OSError as err:
        show_error(err, "Could not start the run")
    else:
        st.session_state["pretrain-select-next"] = run.id
        st.session_state["pretrain-flash"] = f"Launched {run.id}. It keeps running if you close this tab."
        st.rerun()
