"""Embeddings: tiles mapped to 2-D by UMAP of an encoder's features; one checkpoint, or two side by side.

Features, map, clusters and quality come from core.analysis.embeddings (disk-cached); this page turns widgets into a
request, runs it on "Compute" with a progress bar, and draws the maps, the flagged pairs and selected tiles. The data
set is the encoder's own pretraining set when it is labeled, else a synthetic one; added data sources are offered.
The own set is counted from its pretraining run's ``data.json`` (tiles), never built before Compute.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core.analysis import embeddings as E
from core.store.catalog import ModelEntry, encoder_models
from core.store.runs import read_json_file
from core.config import ConfigError, DataConfig
from core.data import DataError
from core.data.seg_folder import load_class_table
from core.store.safepaths import PathRefused, resolve_under
from core.config.strategy import strategy_label
from core.seg.data_defaults import source_data
from core.store.sources import list_sources
from core.imaging.band_preview import preview_chw
from core.imaging.bands import bands_of, card_bands, is_rgb
from workbench.common import (STAY_NOTE, dataset_of, difference_text, go_to, kept_default, pick_picture, show_error,
                              shows_errors)
from workbench.warmup import wait_for_warmup

INPUT_SIZES = [32, 48, 64, 96, 128]
TILE_SIZES = [64, 128, 256]
MAX_SHOWN = 24  # selected tiles drawn at most
PALETTE = px.colors.qualitative.Bold + px.colors.qualitative.Pastel


def results() -> dict[str, E.Embedding]:
    """Embeddings computed or loaded in this session, by cache key (reruns on selection must not reload)."""
    return st.session_state.setdefault("emb-results", {})


def lookup(entry: ModelEntry, request: dict[str, Any]) -> E.Embedding | None:
    """This session's result, else the disk cache's (instant); None when it still has to be computed."""
    key = E.embedding_key(entry.path, **request)
    if key not in results():
        hit = E.find_cached(entry.path, **request)
        if hit is None:
            return None
        results()[key] = hit
    return results()[key]


def compute(entry: ModelEntry, request: dict[str, Any]) -> E.Embedding | None:
    """Run one embedding with a status box and a progress bar; errors become one line."""
    with st.status(f"Embedding with {entry.label}…", expanded=True) as status:
        bar = st.progress(0.0, text=f"waiting for the data set ({STAY_NOTE})")
        wait_for_warmup()  # numba compiles UMAP once per server, in the background since start-up
        try:
            emb = E.compute_embedding(
                entry.path, **request, stage=lambda text: status.update(label=f"{entry.label}: {text}…"),
                progress=lambda done, total: bar.progress(done / total,
                                                          text=f"features of {done}/{total} tiles ({STAY_NOTE})"))
        except Exception as err:  # noqa: BLE001 - bad checkpoint, missing data: one line, never a traceback
            status.update(label=f"{entry.label}: failed", state="error")
            show_error(err, "Embedding failed")
            return None
        seconds = sum(emb.meta.get("seconds", {}).values())
        status.update(label=f"{entry.label}: {len(emb.indices)} tiles in {seconds:.1f} s", state="complete",
                      expanded=False)
    results()[emb.key] = emb
    return emb


def data_choice(entries: list[ModelEntry]) -> tuple[DataConfig, int]:
    """The data set to embed and how many of its tiles: the first checkpoint's own pretraining data (the default
    when it is labeled), a synthetic set, or an added data source (``core.store.sources``)."""
    own = E.checkpoint_data(entries[0].path)
    sources = {f"source:{s.path}": s for s in list_sources() if s.images > 0}
    options = (["own"] if own is not None else []) + ["synthetic"] + list(sources)
    # the first checkpoint changed: its own data again (a review switched to two Dubai runs and embedded them on
    # generated tiles, the pick of the NEON pair before kept)
    if st.session_state.get("emb-source-of") != str(entries[0].path):
        st.session_state["emb-source-of"] = str(entries[0].path)
        st.session_state["emb-source"] = options[0]
    own_tiles = pretrained_tiles(entries[0], own) if own is not None else None
    labels = {"synthetic": "a synthetic aerial set",
              "own": f"the pretraining data of {entries[0].label}" + (f" ({describe(own, own_tiles)})" if own else "")}
    labels |= {k: f"data source {s.path} · {s.format} · {s.images} images" for k, s in sources.items()}
    c1, c2, c3 = st.columns([2, 2, 1])
    source = c1.radio("Data set", options, format_func=labels.get, key="emb-source",
                      help="The encoder's own pretraining data by default; flagged pairs can be drawn only on the "
                           "data set their run trained on")
    if source in sources:
        data, note = source_data(sources[source])
        if sources[source].labels and not data.labeled:  # masks the page could not read: ask for their classes here
            data, note = with_class_table(data, note, c1, key=f"emb-class-table-{sources[source].path}")
        try:
            total = len(dataset_of(data)) if data.labeled else 5000
        except DataError as err:  # a class table whose layout is not this folder's
            c1.error(f"Class table: {' '.join(str(err).split())}")
            data, note, total = data.model_copy(update={"class_table": None, "split_unit": None}), "its masks not read", 5000
        c1.caption(f"{'Labeled' if data.labeled else 'Unlabeled: coloured by cluster'}; {note}.")
        return _tiles_of(data, c2, total)
    if source == "synthetic" or own is None:
        n = c2.slider("Tiles", 200, 5000, step=100, key=kept_default("emb-tiles", 500))
        tile = c3.selectbox("Tile size", TILE_SIZES, key="emb-tile-size")
        bands = card_bands(entries[0].card)  # the synthetic set has R, G, B and NIR
        return DataConfig(name="synthetic", num_tiles=n, tile_size=tile, seed=0, bands=None if is_rgb(bands) else bands,
                          pretrain_splits=["train", "val", "test"]), n
    return _tiles_of(own, c2, own_tiles)


def with_class_table(data: DataConfig, note: str, column: Any, key: str) -> tuple[DataConfig, str]:
    """A labeled folder that no preset reads, with the class table typed here (each source its own ``key``), through
    the path guard as the launch forms' paths: a review was told "give one" on a page with no field for it, and its
    Dubai masks coloured nothing."""
    table = column.text_input("Class table of its masks", key=key, placeholder="configs/classes/....yaml",
                              help="The classes and colours its masks are drawn in (e.g. configs/classes/dubai.yaml): "
                                   "points are then coloured by each tile's dominant class")
    if not table.strip():
        return data, "images and masks, read once a class table is given above"
    try:
        path = resolve_under(table.strip())  # no file outside the workbench's folders is read (or said to exist)
        load_class_table(path)  # its file and entries, checked before any tile is read
        return DataConfig.model_validate({**data.model_dump(), "class_table": str(path)}), \
            f"masks read with {table.strip()}"
    except (ValueError, ConfigError, DataError, PathRefused) as err:
        column.error(f"Class table: {' '.join(str(err).split())}")
        return data, note


def pretrained_tiles(entry: ModelEntry, data: DataConfig) -> int | None:
    """The tile count of the encoder's own set without building it: the ``tiles`` its pretraining run wrote in
    ``data.json`` (the same scenes, tiled alike); None when it has none (a shipped encoder, an older run). Why:
    counting by building the set tiles all of it (minutes for an encoder made on another machine), before anyone
    asked for a map."""
    if entry.shipped:
        return None
    record = read_json_file(entry.path.parent.parent / "data.json")  # runs/<id>/checkpoints/encoder.safetensors
    tiles = record.get("tiles") if isinstance(record, dict) and record.get("name") == data.name else None
    return int(tiles) if isinstance(tiles, int) and not isinstance(tiles, bool) and tiles > 0 else None


def _tiles_of(data: DataConfig, column: Any, total: int | None) -> tuple[DataConfig, int]:
    """How many tiles of a set to embed: all of a small one, else a seeded sample chosen with a slider. A set is
    not built here just to be counted (the page opens on the encoder's own set): a generated set's size bounds it,
    another's ``total`` is given (None: not known until the set is built for its map; the slider then goes to 5000
    and the map takes every tile of a smaller set)."""
    if data.name == "synthetic" and total is None:  # no record: its scenes hold at most the tiles generated
        total = data.num_tiles
        if total <= 200:
            column.caption(f"All tiles of its {'+'.join(data.pretrain_splits)} scenes are embedded (at most {total}).")
            return data, total
    if total is not None and total <= 200:
        column.caption(f"All {total} tiles of this set are embedded.")
        return data, total
    upper = min(5000, total) if total is not None else 5000
    step = max(1, min(100, (upper - 200) // 4))  # a small set still gets a usable slider
    kept = st.session_state.get("emb-own-tiles")
    if kept is not None and not 200 <= kept <= upper:  # the slider kept a bigger set's value: start it afresh
        st.session_state.pop("emb-own-tiles")
    n = column.slider("Tiles (a seeded sample of the set)", 200, upper, min(500, upper), step=step,
                      key="emb-own-tiles")
    if total is None:
        column.caption("Its size is counted when the map is computed (no record of its pretraining run here): a "
                       "smaller set is embedded whole.")
    return data, n


def describe(data: DataConfig, tiles: int | None = None) -> str:
    """The set in words; ``tiles``: those of its pretraining scenes, where known (a generated set's train scenes
    hold fewer tiles than it generates)."""
    scenes = f", scenes of {'+'.join(data.pretrain_splits)}" if data.labeled else ""
    scenes += f", {tiles} tiles in them" if tiles is not None and data.labeled else ""
    scenes += f", bands {', '.join(map(str, data.bands))}" if data.bands else ""
    if data.name == "synthetic":
        return f"synthetic, {data.num_tiles} tiles of {data.tile_size} px generated, seed {data.seed}{scenes}"
    return f"{data.name} {data.root}, {data.tile_size} px tiles{scenes}"


def scatter(emb: E.Embedding, colour_by: str, segments: Any | None, linked: list[int] | None = None) -> go.Figure:
    """One WebGL trace per colour group (so the legend names classes); each point carries its tile index. ``linked``:
    tiles selected in the other map, ringed here (the same tiles, where this encoder put them)."""
    names, colours = emb.meta.get("class_names") or [], emb.meta.get("class_colours") or []
    by_class = colour_by == "class" and emb.dominant is not None
    groups = emb.dominant if by_class else emb.clusters
    fig = go.Figure()
    if segments is not None:
        for calibrated, colour in ((False, "rgba(120,120,120,0.45)"), (True, "rgba(214,39,40,0.8)")):
            part = segments[segments["calibrated"] == calibrated]
            if part.empty:
                continue
            xs = np.column_stack([part["x0"], part["x1"], np.full(len(part), np.nan)]).ravel()
            ys = np.column_stack([part["y0"], part["y1"], np.full(len(part), np.nan)]).ravel()
            fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line=dict(color=colour, width=1),
                                       name="flagged (calibrated)" if calibrated else "flagged", hoverinfo="skip"))
    for n, group in enumerate(np.unique(groups)):
        mask = groups == group
        name = (("no labeled pixel" if group < 0 else names[group] if group < len(names) else f"class {group}")
                if by_class else f"cluster {group}")
        own = colours[group] if by_class and 0 <= group < len(colours) and colours[group] else None
        fig.add_trace(go.Scattergl(  # a class in its own colour, as on the other pages; outlined (white classes)
            x=emb.coords[mask, 0], y=emb.coords[mask, 1], mode="markers", name=name,
            marker=dict(size=5, color=own or PALETTE[n % len(PALETTE)], opacity=0.8,
                        line=dict(color="rgba(60,60,60,0.6)", width=0.5 if own else 0)),
            customdata=emb.indices[mask], hovertemplate=f"tile #%{{customdata}}<br>{name}<extra></extra>"))
    if linked:
        rows = np.isin(emb.indices, np.asarray(linked))
        fig.add_trace(go.Scattergl(x=emb.coords[rows, 0], y=emb.coords[rows, 1], mode="markers",
                                   name=f"selected in the other map ({int(rows.sum())})", hoverinfo="skip",
                                   marker=dict(size=12, color="rgba(0,0,0,0)", line=dict(color="black", width=2))))
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10), dragmode="lasso",
                      legend=dict(orientation="h", y=-0.08), xaxis=dict(showticklabels=False, title=None),
                      yaxis=dict(showticklabels=False, title=None))
    return fig


def same_tiles_answers(emb: E.Embedding, other: E.Embedding) -> tuple[list[int], list[int]] | None:
    """Both maps' right/wrong kNN answers on the tiles both scored, when they are the same tiles (same data and
    sample: the usual two checkpoints side by side); None otherwise, or for maps cached before answers were kept."""
    a, b = emb.quality.knn_right, other.quality.knn_right
    if a is None or b is None or not np.array_equal(emb.indices, other.indices) or len(a) != len(b):
        return None
    both = [(x, y) for x, y in zip(a, b) if x >= 0 and y >= 0]
    return ([x for x, _ in both], [y for _, y in both]) if both else None


def quality_metric(emb: E.Embedding, other: E.Embedding | None) -> None:
    name, value, help_text = emb.quality.headline()
    delta, paired = None, None
    if other is not None and value is not None:
        other_name, other_value, _ = other.quality.headline()
        if other_name == name and other_value is not None:
            paired = same_tiles_answers(emb, other)
            delta = difference_text(name, value, emb.quality.queries or len(emb.indices), other_value,
                                    other.quality.queries or len(other.indices), paired)
    left, middle, right = st.columns(3)
    # grey, not red/green: a colour would call a winner that the interval may not; no arrow within noise (an up
    # arrow stood beside "+0.000")
    arrow = "off" if delta is not None and delta.startswith("within noise") else "auto"
    left.metric(name, "n/a" if value is None else f"{value:.3f}", delta=delta, delta_color="off", help=help_text,
                delta_arrow=arrow)
    q = emb.quality
    if q.knn_accuracy is not None and q.majority_rate is not None:
        middle.metric("majority class", f"{q.majority_rate:.3f}", help="always answering the most common class: "
                      "the kNN accuracy means something only above this")
    if q.knn_accuracy is not None and q.colour_accuracy is not None:
        right.metric("colour statistics", f"{q.colour_accuracy:.3f}",
                     help="the same vote on each tile's per-channel mean and deviation (Euclidean), no encoder: what "
                          "the features must beat to have learned more than colour")
        st.caption(reference_note(q))
    if delta is not None:
        how = (f"paired: each map's right and wrong answers on the same {len(paired[0])} tiles, Newcombe's method"
               if paired is not None else "as if unpaired, on the cautious side")
        st.caption("Under the value: this map's minus the other map's" + (
            f", with the 95 % interval of that difference ({how})" if "[" in delta else ""))


def reference_note(q: E.ClusterQuality) -> str:
    """Where the encoder's kNN stands against its two references, in words (a review read 0.75 as learned where
    colour alone scored 0.79)."""
    from core.analysis.stats import paired_shares_difference

    voters = f"Voters: the {q.k} nearest labeled tiles {q.neighbours_from}."
    pairs = [(a, b) for a, b in zip(q.knn_right or [], q.colour_right or []) if a >= 0 and b >= 0]
    if not pairs:
        return voters
    gap, low, high = paired_shares_difference([a for a, _ in pairs], [b for _, b in pairs])
    interval = (f"{100 * gap:+.1f} points, 95 % paired interval {100 * low:+.1f} to {100 * high:+.1f}, "
                f"{len(pairs)} tiles")
    if high < 0:
        return f"{voters} ⚠️ The features vote worse than the tiles' colours alone ({interval})."
    if low <= 0:
        return (f"{voters} ⚠️ The features vote no better than the tiles' colours alone, within noise ({interval}): "
                "by this measure they have learned nothing beyond colour.")
    return f"{voters} The features vote better than the tiles' colours alone ({interval})."


def _points(event: Any) -> list[Any]:
    """The selected points of a chart's selection event (none when there is no event yet)."""
    try:
        return list(event["selection"]["points"])
    except (TypeError, KeyError):
        return []


@shows_errors
def show_selection(event: Any, data: DataConfig, n: int = 0) -> None:
    chosen = E.selected_tiles(_points(event))
    if not chosen:
        st.caption("Select points (click, box or lasso) to see their tiles.")
        return
    dataset = dataset_of(data)
    picture = pick_picture(bands_of(dataset), f"emb-picture-{n}")
    images = preview_chw(dataset.get_images(chosen[:MAX_SHOWN]), bands_of(dataset), picture)
    images = images.permute(0, 2, 3, 1).numpy()
    more = f" (the first {MAX_SHOWN} shown)" if len(chosen) > MAX_SHOWN else ""
    st.markdown(f"**{len(chosen)} selected tiles**{more}")
    st.image(list(images), caption=[f"#{i}" for i in chosen[:MAX_SHOWN]], width=88)


def card_strategy(card: dict[str, Any]) -> str:
    """A checkpoint's loss as every table says it (``strategy_label`` of its config's loss section; a card without
    one: its loss name), "?" where the card does not say."""
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    loss = config.get("loss") if isinstance(config.get("loss"), dict) else None
    if loss is None and "loss" not in card:
        return "?"
    return strategy_label(loss if loss is not None else {"name": card.get("loss")})


@shows_errors
def panel(n: int, entry: ModelEntry, emb: E.Embedding | None, other: E.Embedding | None, data: DataConfig,
          colour_by: str, draw_pairs: bool) -> None:
    """One checkpoint's column: its number, its map, its flagged pairs and the tiles selected on it."""
    st.markdown(f"**{entry.label}** · {entry.card.get('method', '?')} + {card_strategy(entry.card)}")
    step, total = entry.card.get("step"), entry.card.get("total_steps")
    if isinstance(step, int) and isinstance(total, int) and step < total:  # a stopped or live run's checkpoint
        st.caption(f"⚠️ The encoder of step {step} of {total}: the run's last checkpoint, not a finished run.")
    if emb is None:
        st.info("Not computed yet for these settings: press **Compute**.")
        return
    quality_metric(emb, other)
    seconds = sum(emb.meta.get("seconds", {}).values())
    st.caption(f"{len(emb.indices)} tiles at {emb.meta.get('input_size')} px, {emb.meta.get('precision')}; "
               + ("from the cache" if emb.from_cache else f"computed in {seconds:.1f} s"))
    segments = None
    if draw_pairs:
        segments, message = E.segments_for(entry.path, data, emb)
        st.caption(("🔗 " if segments is not None else "ℹ️ Flagged pairs not drawn: ") + message)
    if colour_by == "class" and emb.dominant is None:
        st.caption("This data set has no labels: coloured by k-means cluster.")
    linked = E.selected_tiles(_points(st.session_state.get(f"emb-map-{1 - n}"))) if other is not None else None
    if linked:
        st.caption(f"⭕ {len(linked)} tile(s) selected in the other map are ringed here.")
    event = st.plotly_chart(scatter(emb, colour_by, segments, linked), key=f"emb-map-{n}", on_select="rerun",
                            selection_mode=("points", "box", "lasso"), width="stretch")
    show_selection(event, data, n)


def page() -> None:
    st.title("🌌 Embeddings")
    st.caption("Each tile is a point: UMAP of the encoder's pooled features. Tiles of one class should gather; "
               "compare two checkpoints (e.g. SimCLR vs SimCLR+FALSE) side by side on the same tiles.")
    models = encoder_models()
    if not models:
        st.info("No pretrained encoders on this machine yet: pretrain one on the Pretrain page.")
        if st.button("🧪 Go to the Pretrain page", key="emb-go-pretrain"):
            go_to("pretrain")
        return
    labels = [m.label for m in models]
    picked = st.multiselect("Encoder checkpoints (two to compare)", labels, default=labels[:2], max_selections=2,
                            key="emb-models")
    if not picked:
        st.info("Pick one checkpoint, or two to compare.")
        return
    entries = [models[labels.index(label)] for label in picked]
    data, n_tiles = data_choice(entries)
    c1, c2, c3 = st.columns([1, 2, 2])
    card_size = entries[0].card.get("image_size")
    size = c1.selectbox("Input size (px)", INPUT_SIZES, key="emb-size",
                        index=INPUT_SIZES.index(card_size) if card_size in INPUT_SIZES else INPUT_SIZES.index(64),
                        help="tiles are resized to this before the encoder; its pretraining view size by default")
    colour_by = c2.radio("Colour by", ["class", "cluster"], horizontal=True, key="emb-colour",
                         format_func={"class": "dominant class", "cluster": "k-means cluster"}.get)
    draw_pairs = c3.checkbox("Draw flagged pairs", key="emb-pairs",
                             help="lines between the tiles FNSD flagged, for a checkpoint of a FALSE run")
    request = dict(data=data, n_tiles=n_tiles, input_size=size)
    try:
        found = [lookup(entry, request) for entry in entries]
    except Exception as err:  # noqa: BLE001 - an unreadable checkpoint file: one line
        show_error(err, "Checkpoint")
        return
    missing = [n for n, emb in enumerate(found) if emb is None]
    if st.button("Compute", type="primary", disabled=not missing, key="emb-compute",
                 help="features, UMAP and cluster quality; results are cached on disk"):
        for n in missing:
            found[n] = compute(entries[n], request)
    columns = st.columns(len(entries))
    for n, (column, entry) in enumerate(zip(columns, entries)):
        other = found[1 - n] if len(entries) == 2 else None
        with column:
            panel(n, entry, found[n], other, data, colour_by, draw_pairs)


page()
