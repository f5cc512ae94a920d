"""Cards and shared results without the paths of the machine that made them.

Why: a shipped card said ``source_run: /tmp/ship_runs/...`` and a comparison listed ``/work/main/runs/...``: noise
to anyone else, and a leak of one machine's layout. Whatever is published (shipped checkpoints, exported models,
``--out`` results) goes through :func:`portable` first.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .runs import REPO_ROOT

ELSEWHERE = "<elsewhere>"


def portable_path(text: str) -> str:
    """An absolute path as it reads on any machine: relative to the project when inside it, else
    ``<elsewhere>/<last part>``; anything else unchanged (project paths inside longer text made relative)."""
    root = str(REPO_ROOT).rstrip(os.sep) + os.sep
    if not text.startswith(os.sep) or "\n" in text or " " in text:
        return text.replace(root, "")
    if text.startswith(root) or text == root.rstrip(os.sep):
        return os.path.relpath(text, REPO_ROOT)
    name = Path(text).name
    return f"{ELSEWHERE}/{name}" if name else ELSEWHERE


def portable(obj: Any) -> Any:
    """``obj`` (JSON-like) with every string made portable by :func:`portable_path`."""
    if isinstance(obj, str):
        return portable_path(obj)
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    return obj


def machine_paths(obj: Any) -> list[str]:
    """The strings in ``obj`` that still name an absolute path of a machine (for tests and checks)."""
    found: list[str] = []
    if isinstance(obj, str):
        if obj.startswith(os.sep) and len(obj) > 1 or str(REPO_ROOT) in obj:
            found.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            found += machine_paths(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found += machine_paths(v)
    return found


__all__ = ["portable", "portable_path", "machine_paths", "ELSEWHERE"]
