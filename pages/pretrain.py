"""Pretrain: every setting in one form, checked by core's config before anything starts; then the run, live."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import streamlit as st

from core.store import launch
from core.store.catalog import config_presets, encoder_models
from core.config import (ENCODERS, PRETRAIN_DATASETS, ConfigError, PretrainConfig, choices, load_config,
                         validate_config)
from core.config.strategy import ORACLE_MARK, data_tag, method_and_strategy, run_name, uses_labels
from core.ssl.registry import get_method, method_names
from core.store.trackers import TRACKERS
from workbench.form_errors import BANDS_HELP, FormErrors, bands_to_text, text_to_bands
from workbench.sources_view import data_sources
from core.store.sources import SourceInfo
from core.seg import data_defaults
from core.seg.data_check import pretrain_data_problem
from core.seg.data_defaults import source_data
from workbench.common import (gpu_processes, has_records, index_of, kept_fragment, literal, pick_run, runs_of,
                              show_error)
from workbench.monitor import watch

DATASET_LABELS = {"synthetic": "synthetic (generated, labeled)", "folder": "folder of my images",
                  "deepglobe": "DeepGlobe land cover (DGLC)", "potsdam": "ISPRS Potsdam",
                  "vaihingen": "ISPRS Vaihingen", "loveda": "LoveDA"}

st.title("🧪 Pretrain")
st.caption("SimCLR or MoCo v2 with InfoNCE, DCL, or a handling of false negatives: a detector flags the negatives "
           "that are likely the anchor's own kind, a treatment decides what the loss does with them (FALSE: FNSD "
           "flags, FNCC calibrates). The run goes on in the background: close the tab, come back, it is still there.")

runs = runs_of("pretrain")
flash = st.session_state.pop("pretrain-flash", None)  # (run id, line): drawn with that run, until it is stopped
if "pretrain-select-next" in st.session_state:  # a run just launched: watch it (set before the widget exists)
    st.session_state["pretrain-run"] = st.session_state.pop("pretrain-select-next")
if runs:
    st.subheader("Watch a run")
    chosen = pick_run("Pretraining run", runs, "pretrain-run", "", prefer=lambda r: r.is_live() or has_records(r))
    if chosen is not None:
        watch(str(chosen.path), key="pretrain", launched=flash[1] if flash and flash[0] == chosen.id else None)
    st.divider()
else:
    st.info("No pretraining runs yet: set one up below and launch it.")

st.subheader("New run")
presets = config_presets("pretrain")
names = list(presets)


def form_generation(preset: str | None) -> str:
    """The session key counting the resets of ``preset``'s form (kept across pages: it starts with "pre-")."""
    return f"pre-resets:{preset}"


def preset_values(preset: str | None = None, drawn: bool = False) -> None:
    """The form of ``preset`` (the one just picked when None) back at the preset's values: its fields are kept
    across pages per preset, so picking a preset again brought back the edits made under it (a review). ``drawn``:
    the form is on screen (the reset button), so its fields get new keys (``k``): a widget whose state is only
    deleted keeps showing, and later sends, what the browser holds (a review's reset changed the run name alone;
    Steps and View size stayed as typed)."""
    chosen = preset or st.session_state.get("pre-preset")
    for key in [key for key in st.session_state if isinstance(key, str) and key.startswith(f"pre-{chosen}-")]:
        del st.session_state[key]
    if drawn:
        st.session_state[form_generation(chosen)] = st.session_state.get(form_generation(chosen), 0) + 1


c_preset, c_reset = st.columns([4, 1], vertical_alignment="bottom")
preset = c_preset.selectbox("Start from a preset", names, index=names.index("demo_cpu") if "demo_cpu" in names else 0,
                            key="pre-preset", on_change=preset_values,
                            help="Files in configs/; every value below can be changed. Picking a preset sets the "
                                 "form to its values.")
c_reset.button("↺ Preset values", key="pretrain-preset-reset", on_click=preset_values, args=(preset, True),
               help="Set every field below back to this preset's values")
try:
    base: PretrainConfig = load_config(presets[preset])
except ConfigError as err:
    show_error(err, f"preset {preset}")
    base = PretrainConfig()


FIELDS = {  # the form's labels and the config fields they set: errors are shown beside them, in these words
    "Method": "method", "Loss": "loss.name", "Detector": "loss.detector", "Treatment": "loss.treatment",
    "Run name": "name", "alpha (FNCC)": "loss.alpha", "threshold (FNCC gate)": "loss.threshold",
    "temperature": "loss.temperature", "selection (FNSD)": "loss.selection", "top-k": "loss.topk",
    "similarity": "loss.similarity", "Support views": "loss.support_views", "tau+ (DCL)": "loss.tau_plus",
    "Symmetric treatment": "loss.symmetric", "Encoder": "model.encoder", "Projection dim": "model.proj_dim",
    "Projection hidden": "model.proj_hidden", "MoCo queue": "model.queue_size", "Data set": "data.name",
    "Synthetic tiles": "data.num_tiles", "Tile size (px)": "data.tile_size", "View size (px)": "data.image_size",
    "Data folder (all but synthetic)": "data.root", "Bands": "data.bands",
    "Class table (folder only, optional)": "data.class_table",
    "Pretrain on the scenes of": "data.pretrain_splits", "Validation share of scenes": "data.val_fraction",
    "Test share of scenes": "data.test_fraction", "Test scenes": "data.test_scenes",
    "Batch size": "train.batch_size", "Steps": "train.max_steps",
    "Epochs": "train.epochs", "Optimizer": "train.optimizer", "Base lr (batch 256)": "train.lr",
    "Weight decay": "train.weight_decay", "Warm-up steps": "train.warmup_steps",
    "Checkpoint every": "train.ckpt_every", "Seed": "seed", "Device": "train.device", "Precision": "train.precision",
    "Log every (steps)": "train.log_every", "kNN monitor every (steps)": "train.knn_every",
    "MoCo momentum": "model.moco_momentum", "SGD/LARS momentum": "train.momentum",
    "Crop scale min": "data.crop_scale_min", "Colour jitter strength": "data.color_strength",
    "Blur probability": "data.blur_prob", "Data seed": "data.seed", "Encoder starts from": "model.weights",
    "channels_last (GPU)": "train.channels_last",
}
fe = FormErrors("pretrain", FIELDS)

LOSS_LABELS = {"info_nce": "InfoNCE", "false": "false-negative handling (FALSE and others)", "dcl": "DCL"}
LOSS_HELP = ("InfoNCE: the plain contrastive loss, every other image a negative. False-negative handling: a detector "
             "flags the negatives that are likely of the anchor's own kind and a treatment changes how the loss counts "
             "them; FALSE is FNSD + FNCC. DCL (debiased contrastive loss): flags nothing, corrects the sum of the "
             "negatives by a class prior tau+")
DETECTOR_LABELS = {"fnsd": "FNSD (FALSE)", "nearest": "nearest", "support": "support (FNC)",
                   "oracle": ORACLE_MARK}  # the ceiling, not a method: said in its help and beneath it when picked
DETECTOR_HELP = ("Which negatives are likely false. FNSD (FALSE's self-determination): the negative whose similarity "
                 "is closest to the anchor's positive similarity (global: the closest pair of the batch; per anchor: "
                 "each anchor's top-k). nearest: each anchor's most similar negatives (top-k, or every one at or above "
                 "the similarity). support (FNC): the same, scored by the mean similarity to extra augmented views of "
                 "the anchor's image. oracle: every negative of the anchor's dominant label class. It reads the "
                 "labels, so it runs on labeled data sets only, and it is the ceiling of what a detector could find, "
                 "not a method: its runs are marked 'uses labels' everywhere")
TREATMENT_LABELS = {"fncc": "FNCC (FALSE)", "eliminate": "eliminate", "attract": "attract"}
TREATMENT_HELP = ("What the loss does with a flagged negative. FNCC (FALSE's calibration): when the anchor's positive "
                  "cosine reaches the threshold, the pair counts as alpha positive and 1 - alpha negative. eliminate "
                  "(FNC): it is left out of the denominator, neither pushed away nor pulled. attract (FNC): it becomes "
                  "one more positive, averaged with the real one")


def k(name: str) -> str:
    """Widget keys depend on the preset: each preset's form is its own; and on its resets (``preset_values``), so
    that a reset draws new widgets at the preset's values."""
    resets = st.session_state.get(form_generation(preset), 0)
    return f"pre-{preset}-{name}" if not resets else f"pre-{preset}-{resets}-{name}"


def default_name(cfg: PretrainConfig) -> str:
    """A run folder's name when none is typed: data, method and loss ("demo-simclr-false"), with the detector and
    treatment where they are not FALSE's ("demo-simclr-nearest-eliminate")."""
    loss = {"name": cfg.loss.name, "detector": cfg.loss.detector, "treatment": cfg.loss.treatment}
    return run_name(cfg.method, loss, form_data_name() or preset_tag())


def preset_tag() -> str | None:
    """The data part of the preset's name ("demo" of "demo-simclr-false"), kept in the names the form makes."""
    return data_tag(base.name, base.method, base.loss.model_dump())


def follow_name(method: str) -> bool:
    """The Run name field follows the method and loss until the user types a name: the preset's name while they are
    the preset's, else one that says them. A review launched plain SimCLR as "demo-simclr-false", an untouched field,
    and every selector and legend called the baseline "false". Other data than the preset's is said first (a Dubai
    folder's run was named "demo-simclr-false" beside the demo's own). True when it changed the field."""
    loss = st.session_state[LOSS_STATE]
    data = form_data_name()
    same = data is None and method == base.method and (loss["name"], loss["detector"], loss["treatment"]) == (
        base.loss.name, base.loss.detector, base.loss.treatment)
    auto = (base.name or "") if same else run_name(method, loss, data or preset_tag())
    last = st.session_state.get(k("name-auto"), base.name or "")
    st.session_state[k("name-auto")] = auto
    if k("name") not in st.session_state:  # the page's first run: the field is drawn below, with this name
        st.session_state[k("name")] = auto
        return False
    if st.session_state[k("name")] != last or st.session_state[k("name")] == auto:
        return False  # typed by the user (it stays), or already this name
    st.session_state[k("name")] = auto
    return True


def form_data_name() -> str | None:
    """The form's data in a run name when it is not the preset's: the folder's name ("dubai_aerial"), or the data
    set's (None: the preset's own)."""
    name = st.session_state.get(k("data"), base.data.name)
    folder = str(st.session_state.get(k("folder"), base.data.root or "") or "").strip()
    if name == "synthetic":  # generated: a folder in the field is not read (the form drops it)
        return None if base.data.name == "synthetic" else name
    own = str(base.data.root or "")
    if name == base.data.name and (folder == own or (folder and own and Path(folder).resolve() == Path(own).resolve())):
        return None
    tag = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(folder).resolve().name if folder else "").strip("_")
    return tag or name


SOURCE_SPLIT = "pretrain-source-split"  # a data source's split settings with no field here (while its data is chosen)


def _other_set() -> None:
    """Another data set: the scenes named for the last one name none of it (a review launched DeepGlobe with
    Dubai's tile_3 and was refused only once the run started)."""
    st.session_state[k("test_scenes")] = ""
    st.session_state.pop(SOURCE_SPLIT, None)


def use_source(source: SourceInfo) -> None:
    """A data source's Use button: the form below reads that folder (its layout picks the data set kind), with the
    class table a preset reading the same folder gives its masks: without one, a labeled folder pretrains unlabeled
    (no kNN monitor, no flag precision, no oracle), which the message says."""
    data, _ = source_data(source)
    split = data_defaults.preset_reading(source.path) is not None  # a preset's split: else the fields stay as typed
    st.session_state[k("data")] = source.kind
    st.session_state[k("folder")] = source.path
    st.session_state[k("bands")] = bands_to_text(source.bands)
    st.session_state[k("class_table")] = data.class_table or ""
    # the split a preset reading the folder makes (Dubai's: tile_3 for test), so that the encoder never reads the
    # scenes its fine-tuning recipe tests on (a review pretrained on tile_3 from here)
    st.session_state.pop(SOURCE_SPLIT, None)
    if split:
        st.session_state[k("test_scenes")] = ", ".join(data.test_scenes)
        st.session_state[k("val_fraction")] = float(data.val_fraction)
        st.session_state[k("test_fraction")] = float(data.test_fraction)
        st.session_state[k("data_seed")] = int(data.seed)
        st.session_state[SOURCE_SPLIT] = {"from": (data.name, data.root, data.class_table),
                                          "split_unit": data.split_unit, "val_scenes": list(data.val_scenes)}
    bands = f" on its bands {', '.join(source.bands)}" if source.bands else ""
    fields = ", ".join(["Data set", "Data folder", *(["Class table"] if source.kind == "folder" else []),
                        *(["Test scenes", "the shares of scenes", "Data seed"] if split else [])]) + " and Bands"
    labels = ""
    if source.kind == "folder" and source.labels:
        labels = (f" Its masks are read with the class table {data.class_table}." if data.class_table else
                  " Its masks are not read until you give its class table (Settings: Class table, e.g. "
                  "configs/classes/*.yaml): until then it pretrains as unlabeled images, without kNN accuracy, flag "
                  "precision or the oracle.")
    st.session_state["pretrain-source-flash"] = (
        "warning" if labels and not data.class_table else "success",
        f"The form below now pretrains on {source.path}{bands} (Settings: {fields}), in this browser tab: a reload "
        f"or a new tab starts from the preset again.{labels}")


data_sources("pretrain", use=use_source, use_label="Use for pretraining")


def data_has_labels() -> bool:
    """Whether the data set of the form (as last launched or filled in by a data source's Use) has labels: every
    set but a folder without a class table."""
    name = st.session_state.get(k("data"), base.data.name)
    table = st.session_state.get(k("class_table"), base.data.class_table or "")
    return name != "folder" or bool(str(table).strip())


def loss_choice() -> tuple[str, str, str]:
    """The loss, and for a false-negative handling its detector and treatment."""
    c1, c2, c3 = fe.columns([2, 1, 1])
    names = choices(PretrainConfig, "loss.name")
    name = c1.radio("Loss", names, index=index_of(names, base.loss.name), key=k("loss"), horizontal=True,
                    format_func=LOSS_LABELS.get, help=LOSS_HELP)
    if name != "false":  # the config refuses a detector or treatment without a false-negative handling
        return name, "fnsd", "fncc"
    detectors = choices(PretrainConfig, "loss.detector")
    detector = c2.selectbox("Detector", detectors, index=index_of(detectors, base.loss.detector), key=k("detector"),
                            format_func=DETECTOR_LABELS.get, help=DETECTOR_HELP)
    treatments = choices(PretrainConfig, "loss.treatment")
    treatment = c3.selectbox("Treatment", treatments, index=index_of(treatments, base.loss.treatment),
                             key=k("treatment"), format_func=TREATMENT_LABELS.get, help=TREATMENT_HELP)
    if uses_labels({"name": name, "detector": detector}):
        if data_has_labels():
            st.info("The oracle reads the data set's labels (each tile's dominant class): it shows how much a "
                    "perfect detector could gain, the ceiling, not a label-free method. Its runs are marked "
                    f"“{ORACLE_MARK}” in every table.", icon="🏷️")
        else:
            st.warning("The oracle reads labels, and the data set below (a folder without a class table) has none: "
                       "Launch will refuse it. Choose another detector, or a labeled set (or a class table).",
                       icon="🏷️")
    elif not data_has_labels():
        st.caption(f"“{DETECTOR_LABELS['oracle']}” needs labels: not on this data set (a folder without a class "
                   "table).")
    return name, detector, treatment


def slots(per_row: int) -> Iterator[Any]:
    """Columns for a varying number of widgets, a new row of ``per_row`` whenever one is full."""
    while True:
        yield from fe.columns(per_row)


def loss_widgets(name: str, detector: str, treatment: str) -> dict[str, Any]:
    """The settings of the chosen loss, detector and treatment, as ``loss.*`` values. The others are not drawn and
    keep the preset's values (this loss does not read them)."""
    lc, col, out = base.loss, slots(4), {}
    out["temperature"] = next(col).number_input(
        "temperature", 0.0, 10.0, float(lc.temperature), 0.05, format="%.3f", key=k("temperature"),
        help="Scale of the cosines in the softmax: smaller is sharper; must be > 0")
    if name == "dcl":
        out["tau_plus"] = next(col).number_input(
            "tau+ (DCL)", 0.0, 1.0, float(lc.tau_plus), 0.01, format="%.3f", key=k("tau_plus"),
            help="DCL's class prior: the share of an anchor's negatives taken to be of its own class, in (0, 1)")
    if name != "false":
        return out
    if detector == "fnsd":
        selections = choices(PretrainConfig, "loss.selection")
        out["selection"] = next(col).selectbox(
            "selection (FNSD)", selections, index=index_of(selections, lc.selection), key=k("selection"),
            help="global: the closest pair(s) of the whole batch are flagged (the paper: about one per batch); "
                 "per_anchor: each anchor flags its own top-k")
    if detector != "oracle" and not (detector == "fnsd" and out.get("selection") == "global"):  # read only then
        out["topk"] = int(next(col).number_input(
            "top-k", 1, 4096, int(lc.topk), key=k("topk"),
            help="Negatives flagged per anchor: FNSD with per_anchor selection; nearest and support without a "
                 "similarity"))
    if detector in ("nearest", "support"):
        out["similarity"] = next(col).number_input(
            "similarity", -1.0, 1.0, lc.similarity, 0.05, format="%.2f", key=k("similarity"),
            placeholder="empty: top-k", help="Flag every negative whose cosine (support: mean cosine to the support "
                                             "views) is at or above this, instead of each anchor's top-k; a cosine "
                                             "in [-1, 1]. Empty: the top-k")
    if detector == "support":
        out["support_views"] = int(next(col).number_input(
            "Support views", 1, 8, int(lc.support_views), key=k("support_views"),
            help="Extra augmented views of each image whose mean similarity ranks its negatives (more: steadier "
                 "flags, a slower step)"))
    if treatment == "fncc":
        out["alpha"] = next(col).number_input(
            "alpha (FNCC)", 0.0, 1.0, float(lc.alpha), 0.05, key=k("alpha"),
            help="How far a calibrated pair moves from negative to positive (1: a full positive; 0: the base loss)")
        out["threshold"] = next(col).number_input(
            "threshold (FNCC gate)", 0.0, 1.0, float(lc.threshold), 0.05, key=k("threshold"),
            help="A flagged pair is calibrated only when the anchor's positive cosine is at least this; in (0, 1]")
    out["symmetric"] = fe.columns(2)[0].checkbox(  # a row of its own: in a quarter column its label was cut short
        "Symmetric treatment", value=lc.symmetric, key=k("symmetric"),
        help="Also treat the mirrored pair (j, i) in j's row (SimCLR; under FNCC gated by j's own positive cosine)")
    return out


LOSS_STATE = "pretrain-loss"  # the loss section's values, for the Launch of the form below


@kept_fragment()
def loss_section() -> None:
    """The loss, its detector and treatment, and the settings of that choice. A fragment outside the form: a change
    here shows the settings of the new choice at once and reruns only this section, so values typed in the form
    below and not launched yet are kept (a rerun of the page would reset them). Launch reads what this drew last
    (``LOSS_STATE``)."""
    st.subheader("Loss")
    name, detector, treatment = loss_choice()
    knobs = loss_widgets(name, detector, treatment)
    st.session_state[LOSS_STATE] = {"name": name, "detector": detector, "treatment": treatment, **knobs}
    choice, last = (name, detector, treatment), st.session_state.get(k("named-loss"))
    st.session_state[k("named-loss")] = choice
    # only a new loss here: other changes (the data) rerun the whole page, whose form renames the field itself, and a
    # rerun from here would drop that run's button click (a Launch after a new data folder launched nothing)
    if last is not None and last != choice and follow_name(st.session_state.get(k("method"), base.method)):
        st.rerun(scope="app")  # the Run name field is outside this fragment: drawn again, it shows the new name
    label = method_and_strategy(st.session_state.get(k("method"), base.method),
                                {**st.session_state[LOSS_STATE], "tau_plus": knobs.get("tau_plus", base.loss.tau_plus)})
    st.caption(f"Run tables will call it **{literal(label)}**. These settings apply at once; Launch "
               "below takes them with the rest of the form.")


# the expander tracks its state (a rerun when folded), so a visit to another page finds it as it was left
with st.expander("Settings", expanded=not runs, key="pretrain-settings", on_change="rerun"):
    loss_section()
    with st.container(border=True, key="pretrain-form"):
        st.subheader("Method")
        c1, c2 = fe.columns(2)
        methods = method_names()  # every registered method (core.ssl.registry)
        method = c1.radio("Method", methods, index=index_of(methods, base.method), key=k("method"),
                          format_func=lambda name: get_method(name).label or name, horizontal=True)
        follow_name(method)
        typed_name = c2.text_input("Run name", key=k("name"), help="A time stamp is put in front; two runs never "
                                   "share a folder. Until you type one, it follows the method and loss")

        st.subheader("Model and data")
        c1, c2, c3, c4 = fe.columns(4)
        encoder = c1.selectbox("Encoder", list(ENCODERS), index=index_of(list(ENCODERS), base.model.encoder),
                               key=k("encoder"))
        proj_dim = c2.number_input("Projection dim", 1, 4096, int(base.model.proj_dim), key=k("proj_dim"))
        proj_hidden = c3.number_input("Projection hidden", 1, 8192, int(base.model.proj_hidden), key=k("proj_hidden"))
        queue = c4.number_input("MoCo queue", 1, 1 << 20, int(base.model.queue_size), key=k("queue"))
        c1, c2, c3, c4 = fe.columns([5, 2, 2, 2])  # the data sets' names need the room
        data_name = c1.selectbox("Data set", list(PRETRAIN_DATASETS), index=index_of(list(PRETRAIN_DATASETS),
                                 base.data.name), key=k("data"), format_func=DATASET_LABELS.get, on_change=_other_set,
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
        c1, c2, c3, c4 = fe.columns([2, 1, 1, 2])
        test_scenes = c4.text_input("Test scenes", value=", ".join(base.data.test_scenes), key=k("test_scenes"),
                                    placeholder="by share", help="Scenes held out for the test, by name or folder, "
                                    "comma-separated (e.g. tile_3): fine-tuning tests on them, so the encoder must "
                                    "never read them. Empty: the test share of the scenes")
        pretrain_splits = c1.multiselect(
            "Pretrain on the scenes of", ["train", "val", "test"], default=base.data.pretrain_splits, key=k("splits"),
            help="Labeled sets are split by scene exactly as fine-tuning splits them; keep test out so that test "
                 "scenes never reach the encoder")
        val_fraction = c2.number_input("Validation share of scenes", 0.0, 0.99, float(base.data.val_fraction), 0.01,
                                       key=k("val_fraction"))
        test_fraction = c3.number_input("Test share of scenes", 0.0, 0.99, float(base.data.test_fraction), 0.01,
                                        key=k("test_fraction"))

        st.subheader("Training")
        c1, c2, c3, c4, c5 = fe.columns(5)
        batch = c1.number_input("Batch size", 1, 65536, int(base.train.batch_size), key=k("batch"))
        by = c2.radio("Length in", ["steps", "epochs"], index=1 if base.train.max_steps is None else 0,
                      key=k("by"), horizontal=True)
        steps = c3.number_input("Steps", 1, 10_000_000, int(base.train.max_steps or 100), key=k("steps"),
                                disabled=by != "steps", help="The run's length when Length in is steps")
        epochs = c4.number_input("Epochs", 0.01, 10_000.0, float(base.train.epochs or 1.0), key=k("epochs"),
                                 disabled=by != "epochs", help="The run's length when Length in is epochs")
        optimizers = choices(PretrainConfig, "train.optimizer")
        optimizer = c5.selectbox("Optimizer", optimizers, index=index_of(optimizers, base.train.optimizer),
                                 key=k("opt"))
        c1, c2, c3, c4, c5 = fe.columns(5)
        lr = c1.number_input("Base lr (batch 256)", 0.0, 10.0, float(base.train.lr), format="%g", key=k("lr"))
        wd = c2.number_input("Weight decay", 0.0, 1.0, float(base.train.weight_decay), format="%.6f", key=k("wd"))
        warmup = c3.number_input("Warm-up steps", 0, 1_000_000, int(base.train.warmup_steps), key=k("warmup"))
        if by == "steps" and warmup >= steps:  # the demo preset's 20 warm-up steps in a 20-step run
            c3.caption(":orange[⚠ the run is all warm-up: its learning rate reaches Base lr at its last step if "
                       "at all]")
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
                                    help="kNN accuracy of the encoder's features, plotted live beside the loss: "
                                         "labeled tiles of some scenes classified by their 20 nearest tiles of the "
                                         "other scenes (0 = off; data without labels: off, said in the run's log). "
                                         "The Embeddings page's kNN accuracy is another measure (leave-one-out over "
                                         "all its tiles, k 5): the two are not comparable")
        if by == "steps" and 0 < knn_every and steps < knn_every:  # the demo's 50 in a 40-step run: no point at all
            c5.caption(f":orange[⚠ never within {int(steps)} steps: no kNN curve]")
        st.subheader("Advanced")
        c1, c2, c3, c4 = fe.columns(4)
        moco_m = c1.number_input("MoCo momentum", 0.0, 1.0, float(base.model.moco_momentum), 0.001, format="%.4f",
                                 key=k("moco_m"))
        sgd_m = c2.number_input("SGD/LARS momentum", 0.0, 0.999, float(base.train.momentum), 0.01, key=k("sgd_m"))
        crop_min = c3.number_input("Crop scale min", 0.01, 1.0, float(base.data.crop_scale_min), 0.05, key=k("crop"))
        color = c4.number_input("Colour jitter strength", 0.0, 2.0, float(base.data.color_strength), 0.1,
                                key=k("color"))
        c1, c2, c3 = fe.columns([1, 1, 2])
        blur = c1.number_input("Blur probability", 0.0, 1.0, float(base.data.blur_prob), 0.1, key=k("blur"))
        data_seed = c2.number_input("Data seed", 0, 2**31 - 1, int(base.data.seed), key=k("data_seed"),
                                    help="Which synthetic set, and the seeded split of scenes of a labeled set")
        starts = {"": "random"} | {str(e.path): e.label for e in encoder_models()}
        weights = c3.selectbox("Encoder starts from", list(starts), format_func=starts.get, key=k("weights"),
                               index=index_of(list(starts), base.model.weights or ""))
        c1, c2 = fe.columns(2)
        channels_last = c2.checkbox("channels_last (GPU)", value=base.train.channels_last, key=k("cl"),
                                    help="The GPU's faster memory layout for convolutions; no effect on the CPU")
        trackers = c1.multiselect(
            "Also send to", list(TRACKERS), default=list(base.train.trackers), key=k("trackers"), placeholder="none",
            help="TensorBoard (event files in the run folder) and/or MLflow (a local store beside the runs): the "
                 "curves, the settings and pictures of the flagged pairs; the Runs page says how to open them")
        submitted = st.button("🚀 Launch", type="primary", key=fe.submit_key)


def form_config() -> PretrainConfig:
    """The form as a validated config: ConfigError names every wrong field, with the refused paths among them."""
    raw = base.model_dump(mode="json")
    raw.update(method=method, seed=int(seed), name=typed_name.strip() or None)
    raw["loss"].update(st.session_state[LOSS_STATE])  # the loss section, drawn above in this run
    raw["model"].update(encoder=encoder, proj_dim=int(proj_dim), proj_hidden=int(proj_hidden), queue_size=int(queue),
                        moco_momentum=moco_m, weights=weights or None)
    raw["data"].update(crop_scale_min=crop_min, color_strength=color, blur_prob=blur, seed=int(data_seed))
    raw["data"].update(name=data_name, num_tiles=int(num_tiles), tile_size=int(tile_size), image_size=int(image_size),
                       root=fe.path(folder, "data.root", keep=base.data.root) if data_name != "synthetic" else None,
                       class_table=fe.path(class_table, "data.class_table", keep=base.data.class_table)
                       if data_name == "folder" else None,
                       pretrain_splits=pretrain_splits, val_fraction=val_fraction, test_fraction=test_fraction,
                       bands=text_to_bands(bands_text))
    raw["data"]["test_scenes"] = [t.strip() for t in test_scenes.split(",") if t.strip()]
    if (raw["data"]["name"], raw["data"]["class_table"]) != (base.data.name, base.data.class_table):
        raw["data"]["split_unit"] = None  # the new class table's own (none for a published set), not the preset's
    split = st.session_state.get(SOURCE_SPLIT) or {}
    if split and tuple(split["from"]) == (data_name, folder.strip(), class_table.strip() or None):
        raw["data"].update(split_unit=split["split_unit"], val_scenes=split["val_scenes"])  # the source's split
    raw["train"].update(momentum=sgd_m, channels_last=channels_last, trackers=list(trackers))
    raw["train"].update(batch_size=int(batch), optimizer=optimizer, lr=lr, weight_decay=wd, warmup_steps=int(warmup),
                        ckpt_every=int(ckpt_every), knn_every=int(knn_every), device=device, precision=precision,
                        log_every=int(log_every),
                        max_steps=int(steps) if by == "steps" else None,
                        epochs=float(epochs) if by == "epochs" else None)
    if raw["train"]["warmup_epochs"] is not None and by == "steps":
        raw["train"]["warmup_epochs"] = None
    return fe.checked(validate_config(raw))


fe.summary()
if submitted:
    try:
        cfg = form_config()
        with st.spinner("Reading the data…"):  # a scene or folder that is not there: refused here, not by the run
            problem = pretrain_data_problem(cfg, int(processes) if device != "cpu" else 1)
        if problem:
            raise ConfigError(problem, [(fe.named_field(problem) or "data.root", problem)])
        run = launch.launch("pretrain", cfg, name=cfg.name or default_name(cfg),
                            processes=int(processes) if device != "cpu" else 1)
    except ConfigError as err:
        fe.refuse(err)
    except OSError as err:
        show_error(err, "Could not start the run")
    else:
        st.session_state["pretrain-select-next"] = run.id
        st.session_state["pretrain-flash"] = (run.id, f"Launched {run.id}. It keeps running if you close this tab.")
        st.rerun()
