"""Whether a command can write the file it was told to write, asked before its work.

Why: a probe's ``--out`` that was a folder, or a fingerprint's in a read-only folder, ended in a traceback after
minutes of work (a review); a comparison and an export had each learnt the same checks on their own.
"""
from __future__ import annotations

import os
from pathlib import Path


class OutTargetError(ValueError):
    """A file that cannot be written where it was asked, said in one line before any work."""


def check_out_file(out: str | Path, flag: str = "--out", example: str = "result.json",
                   beside: tuple[str, str] | None = None) -> bool:
    """Refuse a target that is a folder, sits under a file, or in a folder this process cannot write (or make);
    ``beside``: (suffix, what) of a second file written next to it (``(".json", "card")``), checked too. Returns
    whether a file is replaced."""
    path = Path(out)
    if path.is_dir():
        raise OutTargetError(f"{flag} {out} is a folder: give a file name in it, e.g. {path / example}")
    if beside and path.with_suffix(beside[0]).is_dir():
        raise OutTargetError(f"{flag} {out}: its {beside[1]}'s name {path.with_suffix(beside[0])} is a folder")
    above = next(p for p in path.absolute().parents if p.exists())  # the folders below it are made when it is written
    what = "a file" if not above.is_dir() else "not writable here"
    if (not above.is_dir() or not os.access(above, os.W_OK)) and not path.parent.is_dir():
        raise OutTargetError(f"{flag} {out}: cannot make its folder {path.parent} ({above} is {what})")
    if not above.is_dir() or not os.access(above, os.W_OK) or path.exists() and not os.access(path, os.W_OK):
        raise OutTargetError(f"{flag} {out}: cannot be written ({path if path.exists() else above} is {what})")
    return path.exists()
