"""Overview: this machine, the runs at a glance, the shipped models, and on a fresh machine the way in."""
from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from core.store.catalog import encoder_models, segmentation_models
from core.device import describe_device, pick_device
from core.store.runs import runs_root
from core.store.run_state import SHOWN_LIVE
from core.seg.scene_role import scored_scenes_text
from core.store.run_summary import NOT_UNSEEN, test_not_unseen
from workbench.common import go_to, runs_frame, runs_of, text_cells
from workbench.segment_view import readable_class

st.title("FALSE workbench")
st.caption("False-negative-aware contrastive pretraining (SimCLR, MoCo v2 + FNSD/FNCC) for aerial imagery: "
           "pretrain, inspect the flagged false negatives, explore embeddings, fine-tune and segment.")

device = pick_device()
c1, c2, c3 = st.columns(3)
c1.metric("Compute device", describe_device(device), help=f"torch {torch.__version__}")
runs = runs_of()
states = pd.Series([r.state() for r in runs], dtype=object)
c2.metric("Runs", len(runs), help=f"in {runs_root()}")
c3.metric("Live now", int(states.isin(list(SHOWN_LIVE)).sum()) if len(runs) else 0)

if not runs:
    st.subheader("Start here")
    left, right = st.columns(2)
    with left.container(border=True):
        shipped = [e.path.stem for e in segmentation_models() if e.label.startswith("shipped:")]
        st.markdown(f"**Segment an aerial tile** with the {len(shipped)} shipped models ({', '.join(shipped)}; the "
                    "one that fits each image is picked and named): upload a PNG, JPEG or GeoTIFF, or try a generated "
                    "sample.")
        if st.button("🗺️ Segment a tile", type="primary", key="go-segment"):
            go_to("segment")
    with right.container(border=True):
        st.markdown("**Pretrain with FALSE** on the generated synthetic aerial set (the CPU demo preset: a few "
                    "minutes on a laptop), then look at the false negatives it flagged.")
        if st.button("🧪 Pretrain the demo", key="go-pretrain"):
            go_to("pretrain")
else:
    st.subheader("Runs at a glance")
    frame = runs_frame(runs[:10])
    # the final figure and what it is in one column: with both, "started" was pushed off the page (a review)
    frame["result"] = [v if v == "—" else f"{v} ({m})" for v, m in zip(frame["value"], frame["metric"])]
    st.dataframe(frame[["run", "kind", "state", "method", "progress", "result", "started"]],
                 hide_index=True, width="stretch", column_config={
                     "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                                 format="percent", width="small"),
                     "result": st.column_config.TextColumn("result", help="a pretraining run's last loss; a "
                                                           "fine-tuning run's or a probe's test mIoU, its best "
                                                           "validation mIoU until it is tested"),
                     # the year is in the run's name: the column fits beside the others (it was cut off)
                     "started": st.column_config.DatetimeColumn("started", format="MMM D, HH:mm", width="small")})
    if len(runs) > 10:
        st.caption(f"The 10 newest of {len(runs)} runs; all of them on the Runs page.")

st.subheader("Models on this machine")
MAX_RUN_MODELS = 8  # the shipped models and this many of the runs' newest
rows = []
every = segmentation_models() + encoder_models()
of_runs = [e for e in every if e.label.startswith("run:")]  # newest first; the table wraps, so it is kept short
hidden = max(0, len(of_runs) - MAX_RUN_MODELS)
left_out = {id(e) for e in of_runs[MAX_RUN_MODELS:]}
for entry in [e for e in every if id(e) not in left_out]:
    card = entry.card
    metrics = card.get("evaluation") or card.get("test_metrics") or entry.test or card.get("metrics") or {}
    miou = metrics.get("miou")
    domain = card.get("domain") if isinstance(card.get("domain"), dict) else {}
    scenes = [str(s) for s in metrics.get("scenes") or []]
    on = metrics.get("split")
    if on and scenes:  # Dubai's 9 test images are one scene, tile_3: said so, not as 3 of 9 image names
        data = (card.get("config") or {}).get("data") or {}
        count = scored_scenes_text(scenes, data.get("test_scenes"), unit=data.get("split_unit"))
        names = "" if "(" in count or len(scenes) > 3 else f" ({', '.join(scenes)})"  # "200 scenes": no 3 of them
        on = f"{on}: {count}{names}"
        if test_not_unseen(metrics):  # the record of this very score (a run's test_metrics.json), as Runs says it
            on += f" ⚠️ {NOT_UNSEEN}"
    # the score and the scenes it is on first: the long class lists pushed them off the right edge at 1,280 px
    rows.append({"model": entry.label, "kind": entry.kind, "encoder": card.get("encoder"),
                 "mIoU": 100 * miou if isinstance(miou, (int, float)) else None, "on": on,
                 "domain": ", ".join(str(v) for v in (domain.get("region"),
                                                      f"{domain['gsd_m']} m/px" if domain.get("gsd_m") else None) if v)
                 or None,
                 "size (MB)": f"{entry.path.stat().st_size / 1e6:.1f}",  # MB, not MiB (24,849,970 bytes: 24.8)
                 "classes": ", ".join(readable_class(c["name"]) for c in card.get("classes", [])) or None})
if rows:
    # a static table wraps its cells: every column in view at 1,280-1,400 px, where a scrolling one cut the domain
    # ("Dubai, United Arab Emirat…") and hid the size and classes off the right edge
    table = text_cells(pd.DataFrame(rows))
    table["mIoU"] = [f"{v:.1f}\u00a0%" if isinstance(v, float) and v == v else "—" for v in table["mIoU"]]
    st.table(table.set_index("model"))
    if hidden > 0:
        st.caption(f"And {hidden} more model(s) of runs: the Runs page lists every run.")
else:
    st.info("No models yet: the shipped checkpoints/ folder is missing.")
