"""Router of the workbench: ``streamlit run workbench`` starts this file."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="FALSE workbench", page_icon="🛰️", layout="wide")
pages = [st.Page(str(ROOT / "pages" / "overview.py"), title="Overview", icon="🏠", default=True)]
st.navigation(pages).run()
