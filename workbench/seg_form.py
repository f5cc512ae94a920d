"""The Fine-tune page's launch form, for fine-tuning or a linear probe: what fills it, what it shows, what it launches.

Why the values live in session state: a widget's ``value=`` counts only the first time it is drawn, so a preset
picked later changed nothing on screen while the launch took the preset's hidden settings. Here every source of
values writes the widgets' keys before they are drawn, in callbacks: the Preset box sets every field the preset
names, the Encoder box the encoder's own labeled data set (``core.seg.data_defaults``: split as in its
pretraining), a data source's Use its folder. The last choice wins, a line says where the data fields came from,
and the settings the preset holds beyond the form are listed under it: the form shows what will run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from core.config import (
    SEG_DATASETS,
    ConfigError,
    FinetuneConfig,
    ProbeConfig,
    SegDataConfig,
    choices,
    load_config,
    validate_config,
)
from core.imaging.bands import is_rgb
from core.seg.baseline import launch_baseline
from core.seg.data_check import data_problem
from core.seg.data_defaults import describe, encoder_seg_data, preset_for, same_data_set, source_data
from core.store import launch
from core.store.catalog import ModelEntry, config_presets, encoder_models
from core.store.file_versions import yaml_file
from core.store.run_lock import RunBusyError
from core.store.runs import list_runs
from core.store.sources import SourceInfo
from workbench.common import gpu_processes, kept_keys, literal, show_error
from workbench.form_errors import BANDS_HELP, FormErrors, bands_to_text, text_to_bands
from workbench.sources_view import data_sources

MODES = {"finetune": "Fine-tuning run", "probe": "Linear probe"}
CONFIG = {"finetune": FinetuneConfig, "probe": ProbeConfig}
PRESET_KEY = {"finetune": "ft-preset", "probe": "pb-preset"}
DEFAULT_PRESET = {"finetune": "finetune_demo_cpu", "probe": "probe_demo_cpu"}


@dataclass(frozen=True)
class Field:
    label: str  # the form's words (errors are shown beside the widget, in these)
    key: str  # the widget's session-state key
    path: str  # the config field it sets
    kind: str = "value"  # how config and widget values convert: value, int, float, text, bands, scenes, off0


DATA = (Field("Data set", "ft-data", "data.name"),
        Field("Data set folder (not synthetic)", "ft-root", "data.root", "text"),
        Field("Class table (folder sets)", "ft-table", "data.class_table", "text"),
        Field("Bands", "ft-bands", "data.bands", "bands"),
        Field("Synthetic tiles", "ft-tiles", "data.num_tiles", "int"),
        Field("Tile size", "ft-tile-size", "data.tile_size", "int"),
        Field("Validation share", "ft-val", "data.val_fraction", "float"),
        Field("Test share", "ft-test", "data.test_fraction", "float"),
        Field("Test scenes", "ft-test-scenes", "data.test_scenes", "scenes"),
        Field("Validation scenes", "ft-val-scenes", "data.val_scenes", "scenes"),
        Field("Split seed", "ft-data-seed", "data.seed", "int"),
        Field("Split by", "ft-split-unit", "data.split_unit", "unit"))
DEVICE = {"finetune": Field("Device", "ft-device", "train.device"),  # each kind its own: a probe preset's device
          "probe": Field("Device", "pb-device", "train.device")}  # must not overwrite fine-tuning's (first visit)
OWN = {
    "finetune": (Field("Architecture", "ft-arch", "model.arch"), Field("Protocol", "ft-protocol", "train.protocol"),
                 Field("Label fraction", "ft-fraction", "data.label_fraction", "float"),
                 Field("Steps", "ft-steps", "train.max_steps", "int"),
                 Field("Batch", "ft-batch", "train.batch_size", "int"),
                 Field("lr", "ft-lr", "train.lr", "float"), Field("Crop (px)", "ft-crop", "data.crop_size", "int"),
                 Field("Input scale", "ft-scale", "model.input_scale", "float"),
                 Field("Validate every", "ft-eval", "train.eval_every", "int"),
                 Field("Colour jitter", "ft-jitter", "data.colour_jitter", "float"),
                 Field("Average weights from", "ft-average", "train.average_from", "off0"),
                 Field("Class weights", "ft-class-weights", "train.class_weights"),
                 Field("Loss", "ft-loss", "train.loss"),
                 Field("Run name", "ft-name", "name", "text"), Field("Seed", "ft-seed", "seed", "int")),
    "probe": (Field("Label fraction", "pb-fraction", "data.label_fraction", "float"),
              Field("Epochs", "pb-epochs", "train.epochs", "int"),
              Field("Batch", "pb-batch", "train.batch_size", "int"),
              Field("lr", "pb-lr", "train.lr", "float"), Field("Label stride", "pb-stride", "train.label_stride", "int"),
              Field("Input scale", "pb-scale", "model.input_scale", "float"),
              Field("Run name", "pb-name", "name", "text"), Field("Seed", "pb-seed", "seed", "int")),
}
NEWEST_SEEN = "ft-newest-run"  # the newest pretraining run this form has shown (filled from it, or listed it)
PANEL_KEYS = ("ft-sources-open", "ft-source-pick")  # the data sources panel: open and its pick kept (its title
# counts the sources, so adding one would otherwise fold it)
EXTRA_DATA = ("tile_overlap", "eroded")  # data settings with no field: kept from where the data fields came from
STATE = ("ft-data-from", "ft-data-extra", "ft-trusted")  # where the data came from, hidden data settings, paths
ENCODER_SPLIT = "ft-encoder-split"  # the data fields as the encoder's own split filled them
FILLED_SPLIT = "ft-filled-split"  # the data fields as any source (preset, data source, encoder) last filled them
# the fields that decide which scene lands in which split (bands, the class table or the tile size do not)
SPLIT_KEYS = ("ft-data", "ft-root", "ft-tiles", "ft-val", "ft-test", "ft-test-scenes", "ft-val-scenes", "ft-data-seed",
              "ft-split-unit")
TABLE_UNIT = "class table's"  # data.split_unit unset: the class table's group_by
UNITS = {TABLE_UNIT: "as its class table says (group_by)", "file": "image by image",
         "folder": "folder by folder (its images together)"}
SHORT = {TABLE_UNIT: "class table", "file": "image", "folder": "folder"}  # what the narrow select shows
# taken as written (a preset's or an encoder card's own, not typed)


def fields(mode: str) -> tuple[Field, ...]:
    return (*DATA, *OWN[mode], DEVICE[mode])


def labels(mode: str) -> dict[str, str]:
    """The form's labels and the config fields they set (``FormErrors``)."""
    return {f.label: f.path for f in fields(mode)} | {"Encoder from": "model.init"}


def all_keys() -> list[str]:
    return [f.key for f in (*DATA, *OWN["finetune"], *OWN["probe"], *DEVICE.values())] + list(PRESET_KEY.values()) + \
        ["ft-init"]


def _get(raw: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        raw = raw.setdefault(part, {})
    raw[last] = value


def to_widget(field: Field, value: Any) -> Any:
    if field.kind == "text":
        return "" if value is None else str(value)
    if field.kind == "bands":
        return bands_to_text(value)
    if field.kind == "scenes":
        return ", ".join(map(str, value or []))
    if field.kind == "int":
        return int(value if value is not None else 200)  # a preset given in epochs: the form counts steps
    if field.kind in ("float", "off0"):
        return float(value or 0.0)
    if field.kind == "unit":
        return value or TABLE_UNIT
    return value


def to_config(field: Field, value: Any) -> Any:
    if field.kind == "text":
        return value.strip() or None
    if field.kind == "bands":
        return text_to_bands(value)
    if field.kind == "scenes":
        return [s.strip() for s in str(value).split(",") if s.strip()]
    if field.kind == "off0":
        return float(value) if value > 0 else None
    if field.kind == "int":
        return int(value)
    if field.kind == "float":
        return float(value)
    if field.kind == "unit":
        return None if value == TABLE_UNIT else value
    return value


# ------------------------------------------------------------------------------------------------ filling
def _trust(*paths: Any) -> None:
    st.session_state["ft-trusted"] = sorted({*st.session_state.get("ft-trusted", []), *(p for p in paths if p)})


def fill_data(data: Any, came_from: str) -> None:
    """The data fields from a data config (``SegDataConfig`` or pretraining's ``DataConfig``)."""
    raw = data.model_dump(mode="json")
    for f in DATA:
        st.session_state[f.key] = to_widget(f, _get({"data": raw}, f.path))
    st.session_state["ft-data-extra"] = {k: raw[k] for k in EXTRA_DATA if k in raw}
    if st.session_state.get("ft-crop", 0) > data.tile_size:  # a crop cannot be larger than the tiles
        st.session_state["ft-crop"] = int(data.tile_size)
    st.session_state["ft-data-from"] = came_from
    st.session_state.pop(ENCODER_SPLIT, None)  # a preset's or a source's data: no encoder's split to keep
    st.session_state[FILLED_SPLIT] = {f.key: st.session_state.get(f.key) for f in DATA}  # the caption's "since"
    _trust(data.root, data.class_table)


def fill_preset(mode: str, name: str, with_data: bool = True, own: Any = None) -> bool:
    """Every field a preset names (the data fields too unless ``with_data`` is off, or the preset reads ``own``, the
    data set the chosen encoder was pretrained on: True then, and the caller keeps the encoder's own split)."""
    path = config_presets(mode).get(name)
    if path is None:
        return False
    try:
        cfg = load_config(path, model=CONFIG[mode])
    except (ConfigError, ValueError) as err:
        st.session_state["ft-flash"] = ("error", f"preset {name}: {err}")
        return False
    raw = cfg.model_dump(mode="json")
    for f in (*OWN[mode], DEVICE[mode]):
        st.session_state[f.key] = to_widget(f, _get(raw, f.path))
    keep_own = with_data and own is not None and same_data_set(own, cfg.data)
    if with_data and not keep_own:
        fill_data(cfg.data, f"preset {name}: {describe(cfg.data)}")
    if mode == "finetune" and st.session_state["ft-crop"] > st.session_state.get("ft-tile-size", 10 ** 9):
        st.session_state["ft-crop"] = st.session_state["ft-tile-size"]
    return keep_own


def fill_encoder(entry: ModelEntry | None, under_preset: str | None = None) -> None:
    """The encoder's own labeled data set, split as in its pretraining (its test scenes never reached it); an
    encoder of unlabeled imagery leaves the data fields as they are and says so. ``under_preset``: a preset of that
    data set was picked, whose own split (or size: the synthetic set's scenes come from the same seeds) could put
    scenes the encoder saw into the test split; its recipe is taken, the data kept, and the caption says so."""
    st.session_state.pop(ENCODER_SPLIT, None)  # none kept unless this encoder's own fills it below: a warning about
    st.session_state.pop("ft-data-note", None)  # another's split would send the user to pick that one again
    if entry is None:
        return
    data = encoder_seg_data(entry.card)
    if data is None:
        st.session_state["ft-data-note"] = (f"{entry.label} was pretrained on unlabeled images (or its card does not "
                                            "say on what): the data set below is yours to choose.")
        return
    kept = (f" (kept under preset {under_preset}: its own split of this data set could test on scenes the encoder "
            "saw)" if under_preset else "")
    fill_data(data, f"the pretraining data of {entry.label}: {describe(data)}; split as in its pretraining, so its "
                    f"test scenes never reached the encoder{kept}")
    st.session_state[ENCODER_SPLIT] = {f.key: st.session_state.get(f.key) for f in DATA}  # what "as in" means


def split_changes(snapshot: str = ENCODER_SPLIT) -> list[str]:
    """The data fields changed since they were filled with the encoder's split ("Test share: 0.1 → 0.2"): a review
    changed the test share under a caption still saying "split as in its pretraining", and the run then warned that
    the encoder had read 200 of its validation scenes. ``snapshot``: FILLED_SPLIT for any source's fields."""
    filled = st.session_state.get(snapshot) or {}

    def shown(key: str, value: Any) -> str:
        return UNITS.get(value, str(value)) if key == "ft-split-unit" else str(value)

    return [f"{f.label}: {shown(f.key, filled[f.key])} → {shown(f.key, st.session_state.get(f.key))}" for f in DATA
            if f.key in SPLIT_KEYS and f.key in filled and st.session_state.get(f.key) != filled[f.key]]


def encoder_choices() -> tuple[dict[str, str], dict[str, ModelEntry]]:
    """init value -> label, and init value -> its catalog entry (pretraining runs newest first, then shipped)."""
    entries = {(str(e.path.parent.parent) if e.label.startswith("run:") else str(e.path)): e for e in encoder_models()}
    return {"random": "random (no pretraining)", **{k: e.label for k, e in entries.items()}}, entries


def _preset_picked(mode: str) -> None:
    """The preset's fields, and the other kind's preset made for the data set it brought (a review switched a
    DeepGlobe fine-tuning form to the probe and found it under the synthetic demo's probe preset)."""
    name = st.session_state[PRESET_KEY[mode]]
    _, entries = encoder_choices()
    entry = entries.get(st.session_state.get("ft-init"))
    if fill_preset(mode, name, own=encoder_seg_data(entry.card) if entry is not None else None):
        fill_encoder(entry, under_preset=name)
    data = _shown_data()
    other = next(m for m in MODES if m != mode)
    fitting = preset_for(other, data) if data is not None else None
    if fitting is not None and fitting != st.session_state.get(PRESET_KEY[other]):
        st.session_state[PRESET_KEY[other]] = fitting
        fill_preset(other, fitting, with_data=False)


def _encoder_picked() -> None:
    _, entries = encoder_choices()
    fill_encoder(entries.get(st.session_state.get("ft-init")))


def _use_source(source: SourceInfo) -> None:
    """A data source's Use button: the data fields read that folder (fine-tuning needs its labels)."""
    if not source.labels:
        why = (f"{source.path} has no masks: fine-tuning and probing need labeled images (pretrain on it, or look at "
               "it on the Embeddings page)")
        st.session_state["ft-source-flash"] = ("error", why)
        return
    data, note = source_data(source)
    fill_data(data, f"data source {source.path}: {note}")
    if source.kind == "folder" and not data.class_table:
        st.session_state["ft-table"] = ""
    st.session_state["ft-source-flash"] = ("success", f"The form now reads {source.path} ({note}).")


def keep_values(drawn: str | None) -> None:
    """The form's values outlive runs that do not draw them (the Comparison choice; the other kind's own fields;
    other pages: values typed and not launched were lost on a trip to Runs); a first visit, or one after a newer
    pretraining run appeared, fills the form afresh: the default preset of each kind, then the newest encoder's own
    data set. ``drawn``: the kind whose form this run draws (its widgets keep their values themselves)."""
    kept_keys([*all_keys(), *PANEL_KEYS, "ft-baseline", "pb-baseline"])  # from now on they outlive other pages' runs
    # too (the router)
    missing = [k for k in all_keys() if k not in st.session_state]
    drawn_keys = {f.key for f in fields(drawn)} | {PRESET_KEY[drawn], "ft-init"} if drawn in MODES else set()
    for k in [*all_keys(), *PANEL_KEYS]:
        if k in st.session_state and k not in drawn_keys:
            st.session_state[k] = st.session_state[k]
    _, entries = encoder_choices()
    newest_run = next((k for k, e in entries.items() if e.label.startswith("run:")), None)
    arrived = st.session_state.get("wb-came-from") != st.session_state.get("wb-page")  # from another page
    seen = st.session_state.get(NEWEST_SEEN)
    if not missing and (not arrived or newest_run is None or (seen is not None and newest_run <= seen)):
        if not arrived:  # a run that appears while the user is here is in the Encoder box: not new on the next visit
            st.session_state[NEWEST_SEEN] = newest_run
        return  # the values as left; a pretraining run newer than any seen here starts the form afresh from it
    st.session_state[NEWEST_SEEN] = newest_run
    st.session_state["ft-init"] = newest_run or "random"
    own = encoder_seg_data(entries[newest_run].card) if newest_run else None
    for mode in MODES:  # the recipe made for the encoder's own set, else the default one
        names = list(config_presets(mode))
        if names:
            fitting = preset_for(mode, own) if own is not None else None
            st.session_state[PRESET_KEY[mode]] = fitting or (DEFAULT_PRESET[mode] if DEFAULT_PRESET[mode] in names
                                                            else names[0])
            fill_preset(mode, st.session_state[PRESET_KEY[mode]], with_data=mode == "finetune")
    fill_encoder(entries.get(st.session_state["ft-init"]))


# ------------------------------------------------------------------------------------------------ the form
def _hidden(mode: str, preset: str) -> list[str]:
    """The settings the preset's file gives that the form has no field for (they go into the run as written)."""
    path = config_presets(mode).get(preset)
    try:
        raw = yaml_file(path) if path is not None else {}
    except (OSError, ValueError):
        return []
    shown = {f.path for f in fields(mode)} | {"model.init", "model.encoder", "train.epochs" if mode == "finetune"
                                              else ""} | {f"data.{k}" for k in EXTRA_DATA}

    def leaves(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict):
            return [x for k, v in node.items() for x in leaves(v, f"{prefix}{k}.")]
        return [f"{prefix[:-1]} {node}"] if prefix[:-1] not in shown else []

    return leaves(raw if isinstance(raw, dict) else {}, "")


def draw(mode: str) -> None:
    """The launch form of ``mode`` (finetune or probe), with the preset and encoder above it and the data sources."""
    keep_values(mode)
    presets = config_presets(mode)
    if not presets:
        st.info(f"No {mode} preset in configs/.")
        return
    inits, entries = encoder_choices()
    if st.session_state.get("ft-init") not in inits:  # a run deleted since
        st.session_state["ft-init"] = "random"
    c1, c2 = st.columns([1, 2])
    preset = c1.selectbox("Preset", list(presets), key=PRESET_KEY[mode], on_change=_preset_picked, args=(mode,),
                          help="Picking one sets every field below to its values; settings it has beyond the form "
                               "are listed under the form")
    init = c2.selectbox("Encoder from", list(inits), format_func=inits.get, key="ft-init", on_change=_encoder_picked,
                        help="A pretraining run (its encoder; the newest first) or a shipped encoder checkpoint. "
                             "Picking one sets the data fields to the labeled set it was pretrained on")
    data_sources("ft", use=_use_source, use_label="Use for this run")
    flash = st.session_state.pop("ft-flash", None)
    if flash:
        st.error(literal(flash[1]))
    came_from = st.session_state.get("ft-data-from")
    changed = split_changes() if came_from else []
    if changed:
        st.warning(f"The data fields no longer split as the encoder's pretraining did ({literal('; '.join(changed))}): "
                   "scenes it read may now be in the test or validation split, and then its scores there are not on "
                   "unseen scenes (the run says which). Pick the encoder again to restore its split.", icon="⚠️")
    elif came_from:
        since = split_changes(FILLED_SPLIT)  # a caption naming a split the fields no longer make (a review)
        since_text = f" Changed since: {'; '.join(since)}." if since else ""
        st.caption(f"📍 Data fields from {literal(came_from)}.{literal(since_text)}{shared_note(came_from, presets)}")
        fraction = st.session_state.get("ft-fraction" if mode == "finetune" else "pb-fraction")
        if isinstance(fraction, (int, float)) and fraction < 1:  # a demo preset's 10 % stays: say so beside the data
            st.caption(f"✂️ Label fraction {fraction:.3g}: only that share of the set's labeled tiles trains unless "
                       "the field below says more (1: all of them).")
    recipe = _recipe_hint(mode, preset)
    if recipe:
        st.caption(f"💡 {literal(recipe)}")
    if st.session_state.get("ft-data-note"):
        st.caption(f"ℹ️ {literal(st.session_state['ft-data-note'])}")
    prefix = "ft" if mode == "finetune" else "pb"
    fe = FormErrors(prefix, labels(mode))
    with st.container(border=True, key="ft-form"):
        _data_widgets(fe)
        processes = _finetune_widgets(fe) if mode == "finetune" else _probe_widgets(fe)
        baseline = st.checkbox("Also launch its random-encoder baseline (once per recipe)", value=True,
                               key=f"{prefix}-baseline",
                               help="The same settings with a random encoder, so the score has something to stand "
                                    "beside. Computed once per recipe: skipped when a run of this recipe from a "
                                    "random encoder has a comparable score or is running (a stopped one is resumed), "
                                    "and when the encoder is random itself")
        hidden = _hidden(mode, preset) + [f"data.{k} {v}" for k, v in (st.session_state.get("ft-data-extra") or
                                                                         {}).items() if v]
        if hidden:
            st.caption(literal(f"Also from preset {preset} (no field above): " + "; ".join(hidden)))
        go = st.button("🚀 Launch fine-tuning" if mode == "finetune" else "🚀 Launch the linear probe",
                       type="primary", key=fe.submit_key)
    fe.summary()
    if go:
        _launch(mode, fe, presets[preset], init, entries.get(init), processes, baseline)


def shared_note(came_from: str, presets: dict[str, Any]) -> str:
    """A note when the data fields came from the other kind's preset: fine-tuning and the probe share them, so a
    switch of kind keeps them, and a caption naming a preset absent from this form's list would read as a slip."""
    name = came_from.removeprefix("preset ").split(":")[0] if came_from.startswith("preset ") else None
    return "" if name is None or name in presets else " The data fields are shared by both kinds: a switch keeps them."


def _recipe_hint(mode: str, preset: str) -> str | None:
    """A line when another preset is the recipe made for the data set the form shows (its steps, crop, class
    weights ...), e.g. an encoder of DeepGlobe under the synthetic demo's preset."""
    data = _shown_data()
    fitting = preset_for(mode, data) if data is not None else None
    if data is None or fitting is None or fitting == preset or data.name == "synthetic":
        return None
    return (f"Preset {fitting} is the recipe made for this data set; picking it sets its training settings (and its "
            "data fields).")


def _shown_data() -> SegDataConfig | None:
    """The data set the form's fields name (None while they name none that loads)."""
    try:
        return SegDataConfig(name=st.session_state["ft-data"], root=st.session_state["ft-root"] or None,
                             class_table=st.session_state["ft-table"] or None)
    except (KeyError, ValueError):
        return None


def _forget_launch_errors() -> None:
    """Another data set: the last Launch's errors were about the one before (a review saw DeepGlobe's "no *_sat.jpg"
    beside the folder after switching back to it)."""
    for form in ("ft", "pb"):
        st.session_state.pop(f"{form}-errors", None)
        st.session_state.pop(f"{form}-refused-values", None)


def _data_widgets(fe: FormErrors) -> None:
    c1, c2, c3, c0, c4 = fe.columns([1, 2, 2, 1, 1])
    c1.selectbox("Data set", list(SEG_DATASETS), key="ft-data", on_change=_forget_launch_errors)
    c2.text_input("Data set folder (not synthetic)", key="ft-root",
                  help="In its published layout: under the data root, an added data source, or a preset's own")
    c3.text_input("Class table (folder sets)", key="ft-table", help="e.g. configs/classes/dubai.yaml",
                  on_change=lambda: st.session_state.update({"ft-split-unit": TABLE_UNIT}))  # the new table's unit
    folder = st.session_state.get("ft-data") == "folder"
    off = not folder or not st.session_state.get("ft-table")
    c0.selectbox("Split by", list(UNITS), key="ft-split-unit", disabled=off,
                 format_func=SHORT.get,  # distinct labels: a select tells its options apart by them
                 help="Image folders: what a share of the scenes keeps together: the class table's group_by, each "
                      "image, or each folder (its images together, so a test image never has training neighbours cut "
                      "from the same picture: a Dubai tile's 9 images). Other data sets keep their own scenes whole.")
    c4.text_input("Bands", key="ft-bands", placeholder="the encoder's",
                  help=BANDS_HELP + ". Empty: the bands the chosen encoder was pretrained on (RGB for a random one)")
    c1, c2, c3, c4, c5, c6, c7 = fe.columns([1, 1, 1, 1, 2, 2, 1])
    c1.number_input("Synthetic tiles", 2, 1_000_000, key="ft-tiles")
    c2.number_input("Tile size", 16, 8192, key="ft-tile-size")
    c3.number_input("Validation share", 0.0, 0.99, step=0.01, key="ft-val",
                    help="Share of the scenes held out for validation (when no validation scenes are named). "
                         "0: no validation, every scene that is not a test scene trains; the run's model is then "
                         "the weight average (set \"Average weights from\")")
    c4.number_input("Test share", 0.0, 0.99, step=0.01, key="ft-test",
                    help="Share of the scenes held out for the test (when no test scenes are named)")
    c5.text_input("Test scenes", key="ft-test-scenes", placeholder="by share",
                  help="Scenes held out for the test, by name or folder, comma-separated (e.g. tile_3)")
    c6.text_input("Validation scenes", key="ft-val-scenes", placeholder="by share")
    c7.number_input("Split seed", 0, 2**31 - 1, key="ft-data-seed",
                    help="The seeded split of scenes (and which synthetic set)")


def _finetune_widgets(fe: FormErrors) -> int:
    c1, c2, c3, c4, c5 = fe.columns(5)
    c1.selectbox("Architecture", choices(FinetuneConfig, "model.arch"), key="ft-arch")
    c2.radio("Protocol", choices(FinetuneConfig, "train.protocol"), key="ft-protocol", horizontal=True,
             help="frozen: only the decoder learns (the paper)")
    c3.number_input("Label fraction", 0.001, 1.0, step=0.01, format="%.3f", key="ft-fraction")
    c4.selectbox("Class weights", choices(FinetuneConfig, "train.class_weights"), key="ft-class-weights",
                 help="balanced: rare classes weigh more in the loss")
    c5.selectbox("Loss", choices(FinetuneConfig, "train.loss"), key="ft-loss")
    c1, c2, c3, c4, c5, c6 = fe.columns(6)
    c1.number_input("Steps", 1, 10_000_000, key="ft-steps")
    c2.number_input("Batch", 1, 4096, key="ft-batch")
    c3.number_input("lr", 0.0, 10.0, format="%g", key="ft-lr")
    c4.number_input("Crop (px)", 16, 8192, key="ft-crop")
    c5.number_input("Input scale", 0.01, 1.0, step=0.05, key="ft-scale",
                    help="The model sees its input resized by this (0.5: pixels twice as coarse) and gives its "
                         "masks back at the input's size. With the crop raised by 1/scale (0.5: 512 px), each "
                         "window covers more ground for the same work: land cover gains from the context")
    c6.number_input("Validate every", 1, 1_000_000, key="ft-eval",
                    help="Steps between validations, each also a checkpoint to resume from (only a checkpoint when "
                         "the validation share is 0)")
    c1, c2, c3, c4, c5, c6 = fe.columns(6)
    c1.text_input("Run name", key="ft-name")
    c2.number_input("Seed", 0, 2**31 - 1, key="ft-seed")
    c3.selectbox("Device", ["auto", "cpu", "cuda"], key="ft-device")
    processes = gpu_processes(c4, "ft-gpus", "fine-tuning")
    c5.number_input("Colour jitter", 0.0, 4.0, step=0.5, key="ft-jitter",
                    help="Strength of the photometric distortion: 1 = mild (the default), 0 = none, 2-3 when the "
                         "scenes to segment differ in colour from the training scenes")
    c6.number_input("Average weights from", 0.0, 0.95, step=0.05, key="ft-average",
                    help="0: the run's model is the checkpoint with the best validation mIoU. 0.5: the mean of the "
                         "weights of every step in the second half of the run (the learning rate holds there), which "
                         "needs no choice by a few validation images")
    return processes


def _probe_widgets(fe: FormErrors) -> int:
    st.caption("A linear probe: the encoder stays frozen, a 1x1 convolution on its features is trained, and the "
               "whole test scenes are segmented with it (minutes where fine-tuning takes an hour).")
    c1, c2, c3, c4, c5 = fe.columns(5)
    c1.number_input("Label fraction", 0.001, 1.0, step=0.01, format="%.3f", key="pb-fraction")
    c2.number_input("Epochs", 1, 10_000, key="pb-epochs", help="Passes of the linear head over the cached features")
    c3.number_input("Batch", 1, 4096, key="pb-batch")
    c4.number_input("lr", 0.0, 10.0, format="%g", key="pb-lr")
    c5.number_input("Label stride", 1, 32, key="pb-stride", help="Train against labels subsampled by this factor")
    c1, c2, c3, c4 = fe.columns(4)
    c1.number_input("Input scale", 0.05, 1.0, step=0.05, key="pb-scale",
                    help="Images are resized by this before the encoder (pretraining saw resized crops)")
    c2.text_input("Run name", key="pb-name")
    c3.number_input("Seed", 0, 2**31 - 1, key="pb-seed", help="The head's start and batches (and a random encoder)")
    c4.selectbox("Device", ["auto", "cpu", "cuda"], key="pb-device")
    return 1


def form_config(mode: str, fe: FormErrors, preset_path: Any, init: str, entry: ModelEntry | None) -> Any:
    """The form as a validated config: the preset's, with every field of the form set."""
    base = load_config(preset_path, model=CONFIG[mode])
    raw = base.model_dump(mode="json")
    trusted = set(st.session_state.get("ft-trusted", []))
    for f in fields(mode):
        value = to_config(f, st.session_state[f.key])
        if f.key in ("ft-root", "ft-table") and value:
            value = fe.path(value, f.path, keep=value if value in trusted else None)
        _set(raw, f.path, value)
    raw["data"].update(st.session_state.get("ft-data-extra") or {})
    if raw["data"]["name"] == "synthetic":
        raw["data"]["root"] = None
    if raw["data"]["name"] != "folder" or not raw["data"].get("class_table"):
        raw["data"]["split_unit"] = None  # a published set keeps its own scenes whole (a folder preset's unit stays)
    if mode == "finetune":
        raw["train"]["epochs"] = None
    raw["model"]["init"] = init
    if entry is not None and entry.card.get("encoder"):
        raw["model"]["encoder"] = str(entry.card["encoder"])  # the architecture of the weights it loads
    if not raw["data"].get("bands"):
        raw["data"]["bands"] = encoder_bands(init)
    return fe.checked(validate_config(raw, CONFIG[mode]))


def encoder_bands(init: str) -> list[str] | None:
    """The bands an encoder (a pretraining run or a checkpoint) was trained on; None for RGB ones and random."""
    if init == "random":
        return None
    from core.seg.encoder_init import resolve_init
    from core.ssl.models import checkpoint_bands

    try:
        path = resolve_init(init)
    except Exception:  # noqa: BLE001 - the config's own check says what is wrong with init
        return None
    bands = checkpoint_bands(path) if path is not None else None
    return None if bands is None or is_rgb(bands) else bands


def _launch(mode: str, fe: FormErrors, preset_path: Any, init: str, entry: ModelEntry | None, processes: int,
            baseline: bool) -> None:
    try:
        cfg = form_config(mode, fe, preset_path, init, entry)
        with st.spinner("Reading the data…"):  # as the command line does before it makes a run folder
            problem = data_problem(cfg, probe=mode == "probe")
        if problem:
            # beside the setting it names ("data.test_scenes: 'x' names no scene"), else the data folder
            raise ConfigError(problem, [(fe.named_field(problem) or "data.root", problem)])
        name = cfg.name or (f"finetune-{cfg.model.arch}" if mode == "finetune" else "probe")
        run = launch.launch(mode, cfg, name=name, processes=processes if cfg.train.device != "cpu" else 1)
    except ConfigError as err:
        fe.refuse(err)
        return
    except (OSError, ValueError) as err:
        show_error(err, "Not launched")
        return
    st.session_state["ft-select-next"] = run.id
    what = "Fine-tuning" if mode == "finetune" else "The probe"
    st.success(f"Launched {run.id}; it keeps running if you close this tab. {what} is in the next tab.")
    if baseline:
        try:
            _, said = launch_baseline(run, list_runs())
        except (OSError, ValueError, ConfigError, RunBusyError) as err:
            show_error(err, "Baseline not launched")
            return
        st.caption(f"Baseline: {literal(said)}.")


__all__ = ["MODES", "draw", "encoder_bands", "keep_values"]
