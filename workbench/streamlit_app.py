"""Router of the workbench: ``streamlit run workbench`` starts this file.

Each page is one file in ``pages/``; an error a page did not expect is shown as one line, never a traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run workbench` puts workbench/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

from workbench.common import keep_widget_values, show_error  # noqa: E402
from workbench.warmup import start_warmup  # noqa: E402

PAGES = [  # file, title, icon
    ("overview.py", "Overview", "🏠"),
    ("pretrain.py", "Pretrain", "🧪"),
    ("runs.py", "Runs", "📋"),
    ("false_negatives.py", "False negatives", "🔍"),
    ("embeddings.py", "Embeddings", "🌌"),
    ("finetune.py", "Fine-tune", "🎯"),
    ("segment.py", "Segment", "🗺️"),
]

st.set_page_config(page_title="FALSE workbench", page_icon="🛰️", layout="wide")
start_warmup()
pages = [st.Page(str(ROOT / "pages" / f), title=t, icon=i, default=n == 0) for n, (f, t, i) in enumerate(PAGES)]
page = st.navigation(pages)
keep_widget_values()
# which page the last run drew: a form may start afresh on arrival from another page, never under a user's hands
st.session_state["wb-came-from"], st.session_state["wb-page"] = st.session_state.get("wb-page"), page.title
try:
    page.run()
except Exception as err:  # noqa: BLE001 - st.stop/st.rerun are BaseExceptions and pass through
    show_error(err, f"{page.title} failed")
