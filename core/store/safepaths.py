"""Paths typed into the workbench are resolved and refused outside the roots it may use.

Why: the app runs on a researcher's machine, and a text box that takes a path must not become a way to read or
write anywhere else. Symlinks and ``..`` are resolved before the check. The folders a user added as data sources
(``core.store.sources``) are allowed too; the refusal says how to add one.
"""
from __future__ import annotations

from pathlib import Path

from ..data.paths import data_root
from .runs import REPO_ROOT, runs_root
from .sources import source_paths


class PathRefused(ValueError):
    """The path leads outside the allowed roots (or does not exist when it must)."""


HOW_TO_ADD = ("add the folder as a data source first (Pretrain page, \"Data sources\"), or put it under the data "
              "root ($FALSE_WB_DATA)")


def allowed_roots() -> list[Path]:
    """The runs root, the data root, the shipped checkpoints, the presets and the added data sources."""
    return [runs_root(), data_root(), REPO_ROOT / "checkpoints", REPO_ROOT / "configs", *source_paths()]


def resolve_under(text: str | Path, roots: list[Path] | None = None, must_exist: bool = True) -> Path:
    """The resolved path, if it lies under one of ``roots`` (default :func:`allowed_roots`); else PathRefused."""
    roots = allowed_roots() if roots is None else roots
    raw = str(text).strip()
    if not raw:
        raise PathRefused("no path given")
    if "\0" in raw:
        raise PathRefused("the path contains a NUL character")
    p = Path(raw).expanduser()
    if not p.is_absolute():  # relative: under the data root, unless only the repository has it (configs/...)
        p = REPO_ROOT / p if (REPO_ROOT / p).exists() and not (data_root() / p).exists() else data_root() / p
    resolved = p.resolve()
    for root in roots:
        r = Path(root).expanduser().resolve()
        if resolved == r or r in resolved.parents:
            if must_exist and not resolved.exists():
                raise PathRefused(f"{raw}: no such file or folder ({resolved})")
            return resolved
    names = ", ".join(str(Path(r)) for r in roots)
    shown = raw if str(resolved) == raw else f"{raw} (= {resolved})"  # the resolved path only where it differs
    raise PathRefused(f"{shown}: outside the folders the workbench may use ({names}); {HOW_TO_ADD}")
