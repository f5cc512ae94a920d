"""Overview: what this machine can do, and the runs on disk."""
from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from core.device import describe_device, pick_device
from core.runs import list_runs, runs_root

st.title("FALSE workbench")
st.caption("False-negative-aware contrastive pretraining (SimCLR, MoCo v2 + FNSD/FNCC) for aerial imagery.")

device = pick_device()
st.metric("Compute device", describe_device(device), help=f"torch {torch.__version__}")

runs = list_runs()
st.subheader(f"Runs in {runs_root()}")
if not runs:
    st.info("No runs yet. Start a demo pretraining run from a terminal:\n\n"
            "`python -m core.pretrain --config configs/demo_cpu.yaml`")
else:
    rows = []
    for run in runs:
        s = run.status()
        rows.append({"run": run.id, "state": s.get("state"), "step": s.get("step"),
                     "of": s.get("total_steps"), "error": s.get("error")})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
