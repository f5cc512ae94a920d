"""Helpers for page tests: open the app on one page with AppTest."""
from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "workbench" / "streamlit_app.py")


def open_page(page: str, timeout: float = 90) -> AppTest:
    """The app, switched to ``pages/<page>.py`` and run once."""
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    assert not at.exception, at.exception
    return at.switch_page(f"../pages/{page}.py").run()


def errors(at: AppTest) -> list[str]:
    """The page's error boxes as a reader sees them (markdown escapes undone)."""
    return [shown(e.value) for e in at.error]


def texts(at: AppTest) -> str:
    """All markdown, captions, info and success text of the page (for 'does it say X' checks)."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [s.value for s in at.success] + [w.value for w in at.warning] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def shown(markdown: str) -> str:
    """Markdown with its backslash escapes undone: the text a reader sees."""
    return re.sub(r"\\(.)", r"\1", markdown)
