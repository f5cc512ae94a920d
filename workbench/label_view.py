"""The Segment page's "score against a label mask": IoU per class and where the model was right or wrong.

The scoring is ``core.seg.label_score``; this draws it. A score is kept per (result, mask content), so moving a
slider does not read the mask again. The mask itself is kept per result too: a file uploader forgets its file when
its page is left, so coming back to the page shows the scores again from the kept mask (until the user removes it or
uploads another).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core.seg.label_score import LabelMaskError, LabelScore, difference_image, score_labels
from core.seg.scene_role import NOT_RECOGNISED, role_note, seen_scene_note, unseen_check
from core.seg.segmentation_result import Segmentation, shared_report
from workbench.common import literal
from workbench.segment_view import class_bar_marker, class_rgb, readable_class

SCORES = "segment_label_scores"  # session_state: {(result key, mask digest): LabelScore}
MASKS = "segment_label_masks"  # session_state: {image content id: (file name, bytes)}, the mask last given per image
KEEP_MASKS = 8


def iou_figure(rows: list[dict], classes: list[dict]) -> go.Figure:
    """IoU per class in the class colours (the same colours as the overlay and the legend)."""
    shown = [(r, c) for r, c in zip(rows, classes) if r["iou"] is not None][::-1]
    fig = go.Figure(go.Bar(x=[100 * r["iou"] for r, _ in shown], y=[readable_class(r["class"]) for r, _ in shown],
                           orientation="h",
                           marker=class_bar_marker([class_rgb(c) for _, c in shown]),
                           hovertemplate="%{y}: IoU %{x:.1f}%<extra></extra>"))
    fig.update_layout(height=60 + 28 * len(shown), margin=dict(l=10, r=10, t=10, b=30), xaxis_title="IoU (%)",
                      xaxis_range=[0, 100], showlegend=False)
    return fig


def _score(seg: Segmentation, data: bytes, key: str) -> LabelScore:
    cache: dict = st.session_state.setdefault(SCORES, {})
    k = (key, hashlib.sha1(data).hexdigest())
    if k not in cache:
        cache[k] = score_labels(seg.mask, data, seg.classes, rule=seg.label_masks)
    return cache[k]


def _keep(key: str, image: str) -> None:
    """The user added, replaced or removed the label mask of result ``key`` (the uploader's on_change: a page trip,
    which empties the uploader too, calls nothing). Kept per image, not per result: a new result of the same image
    (another model, or ``auto`` with a new candidate) is scored against the same mask."""
    upload = st.session_state.get(f"labels_{key}")
    masks: dict = st.session_state.setdefault(MASKS, {})
    masks.pop(image, None)
    if upload is not None:
        masks[image] = (upload.name, upload.getvalue())
        for old in list(masks)[:-KEEP_MASKS]:  # the most recent few, as the page keeps a few results
            del masks[old]


def fits_image(data: bytes, shape: tuple[int, ...]) -> bool:
    """Whether a refused mask could still score this image with another model: an image file of its size, in either
    orientation (a photo's EXIF turn is applied on reading), opened by Pillow or, for a GeoTIFF it cannot read, by
    rasterio (a mask refused for its colours is kept for the model whose classes they are; one that neither can
    open, or of another size, is not)."""
    size = _mask_size(data)
    return size is not None and tuple(shape[:2]) in (size, size[::-1])


def _mask_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of an image file's bytes, or None when neither Pillow nor rasterio opens it."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.height, img.width
    except Exception:  # noqa: BLE001 - Pillow cannot: perhaps a GeoTIFF that rasterio reads
        pass
    try:
        from rasterio.io import MemoryFile

        with MemoryFile(data) as mem, mem.open() as src:
            return int(src.height), int(src.width)
    except Exception:  # noqa: BLE001 - neither: no image
        return None


def _forget(image: str) -> None:
    st.session_state.get(MASKS, {}).pop(image, None)


def show_label_score(seg: Segmentation, key: str, preview_side: int, image: str | None = None,
                     image_name: str = "") -> None:
    """``key``: the result's (widget keys); ``image``: the image's content id, under which its mask is kept;
    ``image_name``: its file's name, for the scored report."""
    image = image or key
    kept = st.session_state.get(MASKS, {}).get(image)
    # keyed: the expander stays open across the rerun that an upload inside it starts; open when a mask is kept, so a
    # return to the page shows its scores
    with st.expander("Score against a label mask", expanded=kept is not None, key=f"label_score_{key}"):
        upload = st.file_uploader("Label mask (same size as the image)", type=["png", "tif", "tiff"],
                                  key=f"labels_{key}", on_change=_keep, args=(key, image),
                                  help="class indices (value k = class k of the model: greyscale or 16-bit), the "
                                       "class colours of the legend (RGB, as data sets publish them), or a palette "
                                       "PNG (read by its colours when they are the classes', else as indices); other "
                                       "values and the image's no-data are left out")
        if upload is not None:
            name, data = upload.name, upload.getvalue()
        elif kept is not None:
            name, data = kept
            row = st.container(horizontal=True, vertical_alignment="center")
            row.caption(f"Label mask **{literal(name)}**, uploaded before; upload another mask to replace it.")
            row.button("Remove the label mask", key=f"labels_forget_{key}", on_click=_forget, args=(image,),
                       type="tertiary", icon="✖️")
        else:
            st.caption("Upload the reference labels of this image to see the IoU of every class and where the "
                       "model was right (green) or wrong (red).")
            return
        try:
            result = _score(seg, data, key)
        except LabelMaskError as err:
            gone = not fits_image(data, seg.mask.shape)
            if gone:  # no image, or another size: it can never score this image (a review saw it offered again)
                _forget(image)
            st.error(literal(f"{name}: {err}" + ("; not kept" if gone else "")), icon="🚫")
            return
        s = result.scores
        c1, c2, c3 = st.columns(3)
        over_mask = result.mask_classes_words()  # classes predicted but absent from the mask pull the mean down
        c1.metric("mIoU", f"{100 * s.miou:.1f} %", delta=over_mask.strip(" ()") or None, delta_color="off",
                  delta_arrow="off",
                  help="the mean IoU over the classes in the mask or the prediction: a class predicted but absent "
                       "from the mask counts as 0 on one image however few its pixels (the figure below it leaves "
                       "those out)")
        c2.metric("Pixel accuracy", f"{100 * s.overall_accuracy:.1f} %")
        c3.metric("Left out", result.left_out_text(), help="ignore value, colours of no class, no data")
        if seen := seen_scene_note(seg.notes):  # a walkthrough read a training image's 43 % as an unseen score
            st.warning(f"Not an unseen score: {seen}.", icon="🔁")
        elif not role_note(seg.notes):  # a crop of a training scene is not recognised: said, not implied (a review)
            st.caption(f"🔍 {NOT_RECOGNISED[0].upper()}{NOT_RECOGNISED[1:]}.")
        rows = result.iou_rows(seg.classes)
        left, right = st.columns([3, 2], gap="large")
        diff = difference_image(seg.rgb, seg.mask, result.labels)
        h, w = diff.shape[:2]
        scale = min(1.0, preview_side / max(h, w))
        if scale < 1:
            diff = np.asarray(Image.fromarray(diff).resize((max(1, round(w * scale)), max(1, round(h * scale)))))
        left.image(diff, caption=f"green: right · red: wrong · as is: not scored (read as {result.how})",
                   width="stretch")
        right.plotly_chart(iou_figure(rows, seg.classes), key=f"iou_{key}", config={"displayModeBar": False})
        # one decimal everywhere ("35" beside "62.3" read as two precisions); a dash, not "None", for a class in
        # neither the mask nor the prediction
        shown = [f"{100 * r['iou']:.1f}" if r["iou"] is not None else "—" for r in rows]
        table = pd.DataFrame(rows)
        right.dataframe(table.assign(iou=shown, **{"class": table["class"].map(readable_class)}),
                        hide_index=True, width="stretch", key=f"iou_table_{key}",
                        column_config={"iou": st.column_config.TextColumn(
                                           "IoU (%)", help="—: the class is in neither the mask nor the prediction"),
                                       "label pixels": st.column_config.NumberColumn(format="localized")})
        scored = replace(seg, label_score=result.report(seg.classes, name, unseen_check(seg.notes)))
        st.download_button("Report JSON with this score", data=lambda: shared_report(scored, image_name),
                           file_name=f"{Path(image_name).stem or 'image'}_report.json", mime="application/json",
                           key=f"dl_scored_report_{key}", on_click="ignore", icon="⬇️",
                           help="the report with the score under label_score (miou, accuracy, iou per class), as "
                                "core.segment --labels writes it")
        note = result.absent_note(seg.classes, readable_class)  # as the table beside it names them
        if note:
            st.caption(f"ℹ️ {note}")
        unknown = result.unknown_note()
        if unknown:
            st.caption(f"ℹ️ {unknown}: left out.")
