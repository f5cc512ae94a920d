"""Where the repository is, and a path named as the README names it (``configs/classes/dubai.yaml``) found from any
folder. The standard library only: the config, store and data layers all read it, and config and store must not
import torch."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the presets in configs/ and the shipped checkpoints/


def in_repo(given: str | Path) -> Path:
    """``given`` (``~`` expanded) where it is absolute or exists from here, else the repository's file of that
    name where there is one; otherwise as given (the reader then says it is missing, naming it as the user did)."""
    p = Path(given).expanduser()
    if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).exists():
        return REPO_ROOT / p
    return p
