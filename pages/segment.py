"""Segment: upload aerial tiles (or try a generated one), pick a checkpoint, see the classes and their areas.

A thin adapter over the engine: ``core.imaging.imageio.read_image`` reads each upload (TIFF/GeoTIFF recognised by its
bytes, the georeference kept) and ``core.seg.segment.segment_choosing`` picks the model (``auto``: the best domain fit,
``core.seg.model_choice``) and predicts with sliding windows, no-data left out and the pixel size matched. Results are
kept in ``st.session_state`` by (file content, model version, settings), so moving the opacity slider, switching
tabs, downloading, uploading the same file again or coming back to the page never runs the model again. A file
that cannot be used is one ``st.error`` line; the others go on. A label mask uploaded beside a result scores it
(IoU per class, right/wrong overlay: ``workbench.label_view``).
"""
from __future__ import annotations

import hashlib
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from core.imaging.budget import DEFAULT_MAX_MEGAPIXELS, max_pixels
from core.store.catalog import ModelEntry, segmentation_models
from core.store.checkpoint import CheckpointError
from core.device import pick_device
from core.data.paths import scratch_dir
from core.imaging.bands import card_bands, is_rgb
from core.imaging.imageio import ImageError, LoadedImage, PixelBudgetError, generated_png, read_image
from core.seg.domain import FIT_SCALE
from core.seg.scene_role import note_scene
from core.seg.segment import segment_choosing
from core.seg.segmentation_result import Segmentation, shared_report
from workbench import kept_uploads, shared_results
from workbench.common import kept_default, literal, seg_model, show_error, tab_names
from workbench.label_view import show_label_score
from workbench.segment_view import (RELATIVE_NOTE, areas_frame, choice_parts, class_bar_marker, class_rgb,
                                    legend_html, one_line, readable_class, screen_copy)

PREVIEW_SIDE = 1600  # the overlay is blended and sent at most this large on its longer side
TYPES = ["png", "jpg", "jpeg", "tif", "tiff"]
TILES = [256, 384, 512, 768, 1024]
RESULTS = "segment_results"  # session_state: {result key: Result}, the KEEP_RESULTS most recent
LAST = "segment_last"  # session_state: the result keys last on screen (shown again on a return to the page)
KEEP_RESULTS = 8
AUTO = "auto: best domain fit"
SAMPLE = "segment_sample_seed"  # session_state: the seed of the generated sample tile on show, if any
RESULT_TAB = "segment_tab"  # session_state: the label of the result tab chosen
TAB_TO_SHOW = "segment_tab_show"  # session_state: the id of an upload whose tab to choose once it is drawn
SAMPLE_SIZE = 512
FIRST_SAMPLE_SEED = 2  # a scene with roads, buildings and trees


@dataclass(frozen=True)
class Settings:
    tile: int = 512
    overlap: float = 0.25
    tta: bool = False
    resample: bool = True
    borders: bool = True
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS  # the pixel budget, checked from the header before decoding


@dataclass(frozen=True)
class Upload:
    """One file to segment: an uploaded file or the generated sample (its bytes made only when needed)."""

    id: str
    name: str
    read: Callable[[], bytes]


@dataclass
class Result:
    """What one file gave: the segmentation and a small copy for the screen, or the one-line reason it failed."""

    name: str
    seg: Segmentation | None = None
    preview: Segmentation | None = None
    pixel_size_m: float | None = None
    error: str | None = None
    source: str = ""  # the file's content id: a label mask belongs to the image, whichever model segmented it


# ------------------------------------------------------------------------------------------------ work
def content_id(data: bytes) -> str:
    """What a file is, whatever its name or upload: a digest of its bytes (fast: about 1 GB/s)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_upload(upload: Upload, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> LoadedImage:
    """The upload's bytes through a temporary file into read_image (which reads files, and sniffs TIFFs)."""
    suffix = "".join(ch for ch in Path(upload.name).suffix.lower() if ch.isalnum() or ch == ".")[:8]
    with tempfile.TemporaryDirectory(prefix="upload-", dir=scratch_dir()) as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(upload.read())
        loaded = read_image(path, max_pixels=max_pixels(max_megapixels))
        loaded.name = upload.name  # messages name the user's file, not the temporary one
        return loaded


class _PageModels:
    """What ``core.seg.segment.segment_choosing`` loads models through: the app's cached loader."""

    @staticmethod
    def load(path: Path, device: Any) -> tuple[Any, dict[str, Any]]:  # noqa: ARG004 - the loader picks the device
        return seg_model(Path(path))


def segment_upload(upload: Upload, entry: ModelEntry | None, entries: list[ModelEntry], settings: Settings,
                   device: Any, bar: Any) -> Result:
    """Read and segment one file, feeding ``bar``; any failure becomes Result.error, never an exception."""
    try:
        loaded = read_upload(upload, settings.max_megapixels)
    except PixelBudgetError as err:  # the page's own way to raise it, not the command line's
        return Result(upload.name, error=err.with_hint('raise "Largest image (megapixels)" under Inference settings'))
    except ImageError as err:
        return Result(upload.name, error=str(err))
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the others
        print(traceback.format_exc(), flush=True)
        return Result(upload.name, error=f"cannot be read ({type(err).__name__}: {one_line(err)})")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Segmenting {upload.name}: window {done} of {total}")

    try:
        bar.progress(0.0, text=f"Choosing the model for {upload.name}…" if entry is None else f"Segmenting {upload.name}…")
        seg = segment_choosing(loaded, entries, _PageModels(), given=entry, device=device, resample=settings.resample,
                               borders=settings.borders, tile=settings.tile, overlap=settings.overlap,
                               tta=settings.tta, progress=progress)
        note_scene(seg, upload.name, upload.read())  # one of the model's own scenes: its score is no unseen score
    except (ImageError, CheckpointError) as err:
        return Result(upload.name, error=str(err))
    except MemoryError:
        return Result(upload.name, error="out of memory (try a smaller tile)")
    except Exception as err:  # noqa: BLE001 - e.g. CUDA out of memory: one line, go on with the next file
        print(traceback.format_exc(), flush=True)
        return Result(upload.name, error=f"segmentation failed ({type(err).__name__}: {one_line(err)})")
    return Result(upload.name, seg=seg, preview=screen_copy(seg, PREVIEW_SIDE), pixel_size_m=loaded.pixel_size_m,
                  source=upload.id)


def _version(entry: ModelEntry) -> tuple[str, float]:
    try:
        return str(entry.path), entry.path.stat().st_mtime
    except OSError:
        return str(entry.path), 0.0


def result_key(upload: Upload, entry: ModelEntry | None, entries: list[ModelEntry], settings: Settings) -> str:
    """Same file content, same model(s) and versions, same settings: same result (a re-upload included)."""
    models = [_version(entry)] if entry is not None else ["auto", *(_version(e) for e in entries)]
    raw = repr((upload.id, models, settings))
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def process(uploads: list[Upload], entry: ModelEntry | None, entries: list[ModelEntry],
            settings: Settings) -> list[tuple[str, Result]]:
    """Each upload's result, from session_state when it is there, else from another session of this server
    (``shared_results``: the same bytes under the same name), else computed with a progress bar. The
    ``KEEP_RESULTS`` most recent results stay, so a file uploaded again shows at once."""
    cache: dict[str, Result] = st.session_state.setdefault(RESULTS, {})
    by_key: dict[str, Upload] = {}
    for u in uploads:  # the same file added twice (under any name) is one result, shown once
        by_key.setdefault(result_key(u, entry, entries, settings), u)
    keys = list(by_key)
    todo = [(k, u) for k, u in by_key.items() if k not in cache]
    if todo:
        device = pick_device()
        for k, u in todo:
            shared = f"{k}:{u.name}"  # the name too: the notes may name the file (a scene found by its path)
            if (kept := shared_results.get(shared)) is not None:
                cache[k] = kept
                continue
            bar = st.progress(0.0, text=f"Reading {u.name}…")
            cache[k] = segment_upload(u, entry, entries, settings, device, bar)
            bar.empty()
            if cache[k].error is None:
                shared_results.put(shared, cache[k])
    for k in keys:  # most recent last
        cache[k] = cache.pop(k)
    for stale in list(cache)[:max(0, len(cache) - max(KEEP_RESULTS, len(keys)))]:
        del cache[stale]
    st.session_state[LAST] = keys
    return [(k, cache[k]) for k in keys]


# ------------------------------------------------------------------------------------------------ views
def areas_figure(seg: Segmentation) -> go.Figure:
    """Horizontal bars of each class's percent, in the class colours."""
    rows = list(zip(seg.classes, seg.areas))[::-1]  # plotly draws the first bar at the bottom
    hover = [f"{a['pixels']:,} px" + (f" · {a['square_metres']:,.0f} m²" if a["square_metres"] is not None else "")
             for _, a in rows]
    fig = go.Figure(go.Bar(x=[a["percent"] for _, a in rows], y=[readable_class(a["name"]) for _, a in rows],
                           orientation="h",
                           marker=class_bar_marker([class_rgb(c) for c, _ in rows]),
                           customdata=hover,
                           hovertemplate="%{y}: %{x:.2f}%<br>%{customdata}<extra></extra>"))
    # of the pixels with data: a sixth of no data made "% of image" read 60.6 % water where 51.4 % of it was
    none = seg.nodata_share
    basis = "% of image" if not none else "% of the pixels with data (" + (
        f"{100 * none:.1f} % hold none)" if none >= 0.0005 else "a few hold none)")
    fig.update_layout(height=60 + 28 * len(rows), margin=dict(l=10, r=10, t=10, b=30), xaxis_title=basis,
                      xaxis_range=[0, 100], showlegend=False)
    if seg.areas_relative_only:  # the chart is copied alone too: the caution goes with it
        fig.update_layout(title=dict(text=f"⚠️ {RELATIVE_NOTE}", font=dict(size=13)), margin=dict(t=40),
                          height=90 + 28 * len(rows))
    return fig


def _csv_bytes(seg: Segmentation) -> Callable[[], bytes]:
    return lambda: seg.areas_csv().encode()


def _geotiff_bytes(seg: Segmentation) -> Callable[[], bytes]:
    return lambda: seg.geotiff() or b""


def show_downloads(seg: Segmentation, stem: str, key: str, name: str = "") -> None:
    """Mask PNG, areas CSV, the report JSON (``core.segment``'s and the demo's: model choice, domain, notes) and, for
    georeferenced input, the GeoTIFF: made when clicked, not on every rerun."""
    cols = st.columns(4)
    cols[0].download_button("Mask PNG", data=seg.mask_png, file_name=f"{stem}_mask.png", mime="image/png",
                            key=f"dl_mask_{key}", on_click="ignore", icon="⬇️", width="stretch",
                            help="class indices in the model's class order, shown in the class colours (a palette "
                                 "PNG); no-data pixels are transparent")
    cols[1].download_button("Areas CSV", data=_csv_bytes(seg), file_name=f"{stem}_areas.csv", mime="text/csv",
                            key=f"dl_csv_{key}", on_click="ignore", icon="⬇️", width="stretch")
    cols[2].download_button("Report JSON", data=lambda: shared_report(seg, name), file_name=f"{stem}_report.json",
                            mime="application/json", key=f"dl_report_{key}", on_click="ignore", icon="⬇️",
                            width="stretch", help="what core.segment writes: the model and why, the domain fit and "
                                                  "warning, areas, notes (a label score: below, once a mask is given)")
    if seg.profile is not None:
        cols[3].download_button("GeoTIFF mask", data=_geotiff_bytes(seg), file_name=f"{stem}_mask.tif",
                                mime="image/tiff", key=f"dl_tif_{key}", on_click="ignore", icon="🌍",
                                width="stretch", help="the mask with the input's CRS and transform")


def show_model(seg: Segmentation) -> None:
    """Which model segmented the image, why, how well the image fits its domain, and the warning if it does not."""
    if seg.warning:
        st.warning(seg.warning, icon="⚠️")
    if not seg.model:
        return
    parts = choice_parts(str(seg.model.get("why") or "")) if seg.model.get("how") == "auto" else []
    head = replace(seg, model={**seg.model, "why": parts[0]}) if len(parts) > 1 else seg  # the rest, unfolded below
    st.caption(f"🧭 Model {head.model_line('**')}"
               + (f" · run at {seg.pixel_size_used_m:.2g} m/pixel" if seg.resampled else "")
               + (f" · bands {', '.join(seg.bands)}" if seg.bands else ""))
    scored = seg.domain is not None and seg.domain.score is not None
    if len(parts) > 1 or scored:  # and what its figure means: a walkthrough saw 0.77 and 0.33, no scale
        with st.expander("Why this model" if len(parts) > 1 else "What the domain fit means"):
            st.markdown("\n".join(f"- {literal(p)}" for p in [*parts[1:], *([FIT_SCALE] if scored else [])]))


WIDE = 3  # width over height from which an image is drawn across the page
VIEW_LABELS = {"true": "true colour (R, G, B)", "false": "false colour (NIR, R, G: vegetation red)"}


def pick_view(preview: Segmentation, key: str) -> str:
    """True or false colour for an image with a near-infrared band (``core.imaging.bands``); true colour otherwise."""
    if not preview.views:
        return "true"
    options = ["true", *preview.views]
    return st.radio("Show as", options, format_func=VIEW_LABELS.get, horizontal=True, key=f"opacity_view_{key}",
                    help="the picture under the classes; the model reads its own bands whatever is shown")


def show_result(result: Result, key: str) -> None:
    """One image: the overlay with its opacity slider, the legend, the areas (table and chart), notes, downloads."""
    seg, preview = result.seg, result.preview
    assert seg is not None and preview is not None
    h, w = seg.mask.shape
    show_model(seg)  # the warning first: it changes how everything below should be read
    # a strip (3:1 or wider) takes the page's width, the legend and areas under it: beside them it was a thin line
    left, right = (st.container(), st.container()) if w >= WIDE * h else st.columns([3, 2], gap="large")
    with left:
        opacity = st.slider("Overlay opacity", 0.0, 1.0, step=0.05, key=kept_default(f"opacity_{key}", 0.5))
        view = pick_view(preview, key)
        shown = "" if preview is seg else f", shown at {preview.mask.shape[1]}×{preview.mask.shape[0]}"
        colour = f", {VIEW_LABELS[view]}" if preview.views else ""
        st.image(preview.overlay(opacity, view), caption=f"{result.name}: {w}×{h} pixels{shown}{colour}",
                 width="stretch")
    with right:
        st.html(legend_html(seg))
        geo = "not georeferenced"
        if seg.profile is not None:
            geo = "georeferenced" + (f", {result.pixel_size_m:.3g} m/pixel" if result.pixel_size_m else "")
        st.caption(f"{w}×{h} pixels · {geo}")
        frame = areas_frame(seg).round({"m²": 0})  # whole square metres: a quarter of one is no measurement here
        frame["class"] = frame["class"].map(readable_class)  # as the legend and the chart write it
        relative = "caution" in frame  # out of domain: the caution heads the table and names its share column,
        if relative:                   # not a column of its own repeated per row (it pushed the shares off screen)
            st.caption(f"⚠️ {RELATIVE_NOTE} (the warning above says why): areas are shares of the image, no m²")
        order = ["class", "percent", *[c for c in frame.columns if c not in ("class", "percent", "caution")]]
        st.dataframe(frame, hide_index=True, width="stretch", key=f"areas_{key}", column_order=order,
                     column_config={"pixels": st.column_config.NumberColumn(format="localized"),  # 103,950 fits
                                    "percent": st.column_config.ProgressColumn(
                                        "share ⚠️" if relative else "percent", format="%.1f%%", min_value=0,
                                        max_value=100, width="medium" if relative else "small",
                                        color="gray",  # the theme's red read as "bad" on every class
                                        help=RELATIVE_NOTE if relative else None),
                                    "m²": st.column_config.NumberColumn(format="localized")})
        st.plotly_chart(areas_figure(seg), key=f"chart_{key}", config={"displayModeBar": False})
    for note in seg.notes:
        st.caption(f"ℹ️ {note}")
    show_downloads(seg, Path(result.name).stem or "image", key, result.name)
    show_label_score(seg, key, PREVIEW_SIDE, image=result.source or key, image_name=result.name)


def show_results(results: list[tuple[str, Result]]) -> None:
    for _, r in results:
        if r.error is not None:
            st.error(literal(f"{r.name}: {r.error}"), icon="🚫")
    good = [(k, r) for k, r in results if r.seg is not None]
    if not good:
        return
    if len(good) == 1:
        show_result(good[0][1], good[0][0])
        return
    # keyed and tracked: the chosen tab stays chosen through the rerun a mask upload inside it starts (untracked
    # tabs went back to the first, showing another image's scores)
    names = tab_names([r.name for _, r in good])
    show, ids = st.session_state.pop(TAB_TO_SHOW, None), [r.source for _, r in good]
    if show in ids:
        st.session_state[RESULT_TAB] = names[ids.index(show)]
    elif st.session_state.get(RESULT_TAB) not in names:  # a tab of an image since removed: the first
        st.session_state.pop(RESULT_TAB, None)
    tabs = st.tabs(names, key=RESULT_TAB, on_change="rerun")
    for tab, (k, r) in zip(tabs, good):
        with tab:
            show_result(r, k)


# ------------------------------------------------------------------------------------------------ controls
def sample_upload(seed: int) -> Upload:
    """A generated aerial-like scene (core.data.generate_scene) as a PNG upload."""
    def make() -> bytes:
        from core.data import generate_scene

        return generated_png(generate_scene(seed, SAMPLE_SIZE)[0], f"core.data.generate_scene seed {seed}")

    return Upload(id=f"sample-{seed}", name=f"sample_scene_{seed}.png", read=make)


def synthetic_model(entries: list[ModelEntry]) -> str | None:
    """The label of the first model trained on the synthetic classes (the sample tile's), if there is one."""
    from core.data import CLASSES

    names = [name for name, _ in CLASSES]
    for e in entries:
        if [c.get("name") for c in e.card.get("classes") or [] if isinstance(c, dict)] == names:
            return e.label
    return None


def _next_sample() -> None:
    """Show a (new) sample. The model choice stays the user's: auto sends the sample to the model that knows such
    scenes, and a model the user picked is kept for every image (with a note beside the sample)."""
    st.session_state[SAMPLE] = st.session_state.get(SAMPLE, FIRST_SAMPLE_SEED - 1) + 1
    # its tab chosen: added last among the uploads' tabs, the sample seemed to do nothing (a review); by its id, as
    # tabs of files sharing a name are numbered
    st.session_state[TAB_TO_SHOW] = sample_upload(st.session_state[SAMPLE]).id


def _drop_sample() -> None:
    st.session_state.pop(SAMPLE, None)


def pick_model(entries: list[ModelEntry]) -> ModelEntry | None:
    """The model the user picked, or None for auto (the best domain fit per image)."""
    labels = [AUTO] + [e.label for e in entries]
    label = st.selectbox("Model", labels, index=0, key="segment_model",
                         help="auto: per image, the model whose training imagery it resembles most (its score "
                              "and the reason are shown); else shipped checkpoints, then each fine-tuning run's best")
    if label == AUTO:
        st.caption(f"Chooses among {len(entries)} model(s) by their domain fingerprints.")
        return None
    entry = entries[labels.index(label) - 1]
    classes = entry.card.get("classes") or []
    if classes:
        bands = card_bands(entry.card)
        st.caption(f"{entry.card.get('arch', '?')} · {entry.card.get('encoder', '?')} · "
                   + ", ".join(str(c.get("name")) for c in classes if isinstance(c, dict))
                   + ("" if is_rgb(bands) else f" · reads bands {', '.join(bands)} (GeoTIFFs with them)"))
    return entry


def pick_settings() -> Settings:
    with st.expander("Inference settings"):
        tile = st.select_slider("Tile (pixels)", TILES, key=kept_default("segment_tile", 512),
                                help="side of the sliding window; images larger than this are cut into windows")
        overlap = st.slider("Overlap", 0.0, 0.5, step=0.05, key=kept_default("segment_overlap", 0.25),
                            help="fraction of the tile that neighbouring windows share (blended)")
        tta = st.checkbox("Flip test-time augmentation", key="segment_tta",
                          help="average with a horizontally flipped pass (twice the time)")
        resample = st.checkbox("Match the model's pixel size", key=kept_default("segment_resample", True),
                               help="when a GeoTIFF's pixel size differs from the model's by more than 1.5x, run "
                                    "at the model's and bring the mask back to the image's grid")
        borders = st.checkbox("White/black corners are no data", key=kept_default("segment_borders", True),
                              help="near-white or near-black regions holding a corner of the image (scanner "
                                   "margins, reprojection wedges); declared no-data (a mask, transparency, NaN, a "
                                   "nodata value) is always left out")
        budget = st.number_input("Largest image (megapixels)", 1.0, 2000.0, step=10.0,
                                 key=kept_default("segment_max_mp", page_budget()),
                                 help="larger files are refused from their header, before decoding; a 50 MP image "
                                      "takes a few minutes on 2 CPU cores")
    return Settings(int(tile), float(overlap), bool(tta), bool(resample), bool(borders), float(budget))


def page_budget() -> float:
    """The default pixel budget in megapixels ($FALSE_WB_MAX_MEGAPIXELS, else 50), kept inside the input's range."""
    try:
        return min(2000.0, max(1.0, max_pixels() / 1e6))
    except ValueError:
        return DEFAULT_MAX_MEGAPIXELS


def load_model(entry: ModelEntry) -> tuple[Any, dict[str, Any]] | None:
    """The cached model and card; a missing or broken checkpoint is one st.error line."""
    try:
        model, card = seg_model(entry.path)
    except Exception as err:  # noqa: BLE001 - CheckpointError, a missing file, a card that builds no model
        show_error(err, f"Model {entry.label} cannot be used")
        return None
    return model, card  # its card, classes included, was checked by core.seg.segmodel.check_card


def main() -> None:
    st.title("🗺️ Segment")
    st.caption("Upload aerial tiles: PNG, JPEG, TIFF or GeoTIFF (the georeference is kept, areas in m² when the "
               "pixel size is known and the image fits the model's domain, else shares only). Large images are cut "
               "into blended sliding windows.")
    entries = segmentation_models()
    if not entries:
        st.error("No segmentation checkpoint found: neither a shipped one in checkpoints/ nor a fine-tuning run.",
                 icon="🚫")
        return
    left, right = st.columns([3, 2], gap="large")
    with left:
        files = st.file_uploader("Aerial tiles", type=TYPES, accept_multiple_files=True, key="segment_files",
                                 help="up to the pixel budget in the inference settings (50 megapixels unless "
                                      "changed)")
        shown = SAMPLE in st.session_state
        row = st.container(horizontal=True)
        synth = synthetic_model(entries)
        row.button("Another sample tile" if shown else "Try a generated sample tile", icon="🎲",
                   on_click=_next_sample, key="segment_sample", type="secondary" if shown else "primary",
                   help="a synthetic aerial scene" + (f"; auto picks a model trained on such scenes, like {synth}"
                                                      if synth else ""))
        if shown:
            row.button("Remove the sample", on_click=_drop_sample, key="segment_sample_drop", type="tertiary")
        sample_note = st.empty()
    with right:
        entry = pick_model(entries)
        settings = pick_settings()
    if SAMPLE in st.session_state and entry is not None and entry.label != synth:
        sample_note.caption(f"The sample is a synthetic scene; {entry.label} was not trained on such scenes"
                            + (f" ({synth} was)." if synth else "."))
    uploads = [Upload(content_id(f.getvalue()), f.name, f.getvalue) for f in files or []]
    if uploads:
        kept_uploads.remember([(u.id, u.name, u.read) for u in uploads])
    else:  # back from another page (the uploader forgot its files): the last files, run again if anything changed
        uploads = [Upload(i, name, (lambda data=data: data)) for i, name, data in kept_uploads.kept()]
        if uploads:
            with left:
                st.caption("Your last uploads, kept while you visit other pages: another model or other settings "
                           "segment them again. Upload files to segment others.")
                st.button("Forget them", key="segment_forget", on_click=kept_uploads.forget, args=(LAST,),
                          type="tertiary", icon="🧹")
    if SAMPLE in st.session_state:
        uploads.append(sample_upload(int(st.session_state[SAMPLE])))
    if not uploads:
        last = [(k, r) for k, r in ((k, st.session_state.get(RESULTS, {}).get(k)) for k in st.session_state.get(LAST, []))
                if r is not None]
        if last:
            st.caption("Your last results. Their files were too large to keep while you visited other pages: upload "
                       "them again to segment them with another model or other settings.")
            st.divider()
            show_results(last)
            return
        st.info("Drop one or more aerial tiles above, or try a generated sample tile (a synthetic aerial scene"
                + (f"; auto picks a model trained on such scenes, like {synth})." if synth else ").")
                + " Results stay while you change the opacity, switch tabs or visit other pages.", icon="👆")
        return
    if entry is not None and load_model(entry) is None:
        return
    st.divider()
    show_results(process(uploads, entry, entries, settings))


if __name__ == "__main__":  # Streamlit runs a page as __main__; bench/segment_ui.py imports its functions
    main()
