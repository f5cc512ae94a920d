"""Data sources: folders of the user's own imagery that the workbench may read, added from the browser.

Why a list and not "any path": the app runs on a researcher's machine and its text boxes must not read anywhere
(``core.store.safepaths``). The user adds a folder once (the Pretrain page's "Data sources"); it is kept in
``<data root>/sources.json`` and from then on every typed path under it passes the guard. Each source is described
by what is in it (format, image count, labels) so a picker can show it.
"""
from __future__ import annotations

import json
import math
import os
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..imaging.imageio import has_image_signature, image_header
from ..imaging.raster import file_bands
from ..data.paths import data_root
from .runs import atomic_write_json

SETTINGS = "sources.json"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
COUNT_LIMIT = 100_000  # files looked at when counting a source's images (a huge tree stays quick)
SAMPLE_READ = 5  # image headers read when a folder is added: none readable, and it is refused


class SourceError(ValueError):
    """A folder that cannot be a data source (missing, not a folder, the whole disk)."""


@dataclass
class SourceInfo:
    path: str
    format: str  # what the folder looks like, in words
    images: int  # image files found (at most COUNT_LIMIT looked at), by their first bytes, not only their names
    labels: bool  # masks beside the images (an images/ + masks/ layout or DeepGlobe's *_mask.png)
    added: float = 0.0
    kind: str = "folder"  # the data set kind (config data.name) that reads it: "folder" or "deepglobe"
    bands: list[str] | None = None  # the first image's bands when it has more than R, G, B (core.imaging.bands)
    not_images: int = 0  # files named like images that do not start as one (text, empty): reading skips them


SET_ASIDE = "sources.json.unreadable"  # where a settings file that is not ours goes (the next Add starts afresh)
SETTINGS_LIMIT = 4 * 2**20  # bytes: far above any real list of folders; a bigger file is not one we wrote


def _settings_file() -> Path:
    return data_root() / SETTINGS


def _forbidden_folder(folder: Path) -> bool:
    """The whole disk or the home folder: a source there would open every file to the path guard."""
    return folder == Path(folder.anchor) or folder == Path.home().resolve()


def _valid_record(r: Any) -> dict[str, Any] | None:
    """An entry as Add writes it, re-checked by Add's rules (the file is on disk and anyone may have edited it)."""
    if not isinstance(r, dict) or not isinstance(r.get("path"), str) or not r["path"].strip():
        return None
    folder = Path(r["path"])
    if not folder.is_absolute() or ".." in folder.parts or _forbidden_folder(folder):
        return None
    if not all(isinstance(r.get(k, 0), (int, float)) and not isinstance(r.get(k, 0), bool)
               and math.isfinite(r.get(k, 0)) for k in ("images", "added")):
        return None  # JSON's Infinity and NaN are numbers too, and int() of them raises
    return r


def _records() -> list[dict[str, Any]]:
    """The valid entries; a file that is not a list of sources is set aside (see settings_problem)."""
    path = _settings_file()
    try:
        if path.stat().st_size > SETTINGS_LIMIT:
            raise ValueError(f"larger than {SETTINGS_LIMIT // 2**20} MiB")
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("sources", []), list):
            raise ValueError("not {\"sources\": [...]}")
    except OSError:
        return []  # absent or unreadable for now (permissions, a busy disk): the file itself may be fine
    except (ValueError, RecursionError):  # its content is not ours: set it aside, once read
        try:
            os.replace(path, path.with_name(SET_ASIDE))
        except OSError:
            pass
        return []
    return [r for r in map(_valid_record, raw.get("sources", [])) if r is not None]


def settings_problem() -> str | None:
    """One line for the page when a settings file was set aside; None when all is well."""
    aside, current = data_root() / SET_ASIDE, _settings_file()
    try:
        set_aside = aside.stat().st_mtime
    except OSError:
        return None  # nothing set aside
    if current.exists() and current.stat().st_mtime >= set_aside:
        return None  # a list written since (an Add) has repaired it
    return (f"{SETTINGS} could not be read as a list of folders and was set aside as {aside}; the folders it named "
            "are not sources until added again (Add writes a new list).")


def source_paths() -> list[Path]:
    """The registered folders (resolved); an unreadable settings file counts as none."""
    return [Path(str(r["path"])) for r in _records() if r.get("path")]


def describe(folder: Path) -> SourceInfo:
    """Format, image count and whether labels are there, from the folder's layout (one walk, at most COUNT_LIMIT
    files looked at)."""
    images, masks, under_images, pairs, not_images = 0, 0, 0, 0, 0
    looked = 0
    first: Path | None = None
    images_dir = folder / "images"
    layout = images_dir.is_dir() and (folder / "masks").is_dir()
    for where, _, files in os.walk(folder):
        inside = layout and Path(where).is_relative_to(images_dir)
        lower = {f.lower() for f in files}
        pairs += sum(f.endswith("_sat.jpg") and f[:-len("_sat.jpg")] + "_mask.png" in lower for f in lower)
        for name in files:
            looked += 1
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES or not _regular(Path(where) / name):
                continue  # a FIFO, socket or device named like an image would hang or lie when opened
            if not has_image_signature(Path(where) / name):
                not_images += 1
                continue
            if name.lower().endswith("_mask.png"):
                masks += 1
            else:
                images += 1
                under_images += inside
                if first is None and (inside or not layout):
                    first = Path(where) / name
        if looked >= COUNT_LIMIT:
            break
    bands = _bands(first)
    if layout:
        return SourceInfo(str(folder), "images/ + masks/ (labeled: masks read with a class table)", under_images, True,
                          bands=bands, not_images=not_images)
    if pairs:  # DeepGlobe's reader takes <id>_sat.jpg with <id>_mask.png beside it, nothing else
        return SourceInfo(str(folder), "DeepGlobe layout (*_sat.jpg + *_mask.png)", pairs, True, kind="deepglobe")
    # a stray *_mask.png without its *_sat.jpg makes no labeled set: the folder reader takes every image in it
    return SourceInfo(str(folder), "a folder of images (unlabeled)", images + masks, False, bands=bands,
                      not_images=not_images)


def _first_images(folder: Path, n: int) -> list[Path]:
    """Up to ``n`` image files of the folder (by name; masks left out), to read their headers."""
    out: list[Path] = []
    for where, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(where) / name
            if path.suffix.lower() in IMAGE_SUFFIXES and not name.lower().endswith("_mask.png") and _regular(path):
                out.append(path)
                if len(out) >= n:
                    return out
    return out


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _bands(image: Path | None) -> list[str] | None:
    """An image's band names from its header when it has more than R, G, B (a 4-band GeoTIFF: R, G, B, NIR)."""
    if image is None:
        return None
    try:
        names = [n for n in file_bands(image) if n != "alpha"]
    except Exception:  # noqa: BLE001 - an unreadable file is the tiling's to report
        return None
    return names if len(names) > 3 else None


def add_source(text: str | Path) -> SourceInfo:
    """Register a folder (kept in the settings file); one line when it cannot be one."""
    raw = str(text).strip()
    if not raw:
        raise SourceError("give the folder's path, e.g. /data/my_tiles")
    folder = Path(raw).expanduser()
    if not folder.is_absolute():
        raise SourceError(f"{raw}: give the full path of the folder (starting with /)")
    folder = folder.resolve()
    if not folder.exists():
        raise SourceError(f"{raw}: no such folder")
    if not folder.is_dir():
        raise SourceError(f"{raw}: a file, not a folder; add the folder that holds the images")
    if _forbidden_folder(folder):
        raise SourceError(f"{raw}: the whole disk or home folder cannot be a data source; add the folder of images")
    info = describe(folder)
    if info.images == 0:
        extra = f"; {info.not_images} file(s) are named like images but are not" if info.not_images else ""
        raise SourceError(f"{raw}: no images in it (PNG, JPEG or TIFF, in it or its subfolders){extra}")
    sample = _first_images(folder, SAMPLE_READ)
    if sample and all(image_header(p) is None for p in sample):  # a launch on it would fail after it started
        names = ", ".join(p.name for p in sample[:3])
        raise SourceError(f"{raw}: none of the first {len(sample)} image file(s) can be read ({names}): not images, "
                          "or damaged")
    records = [r for r in _records() if Path(str(r.get("path"))) != folder]
    info.added = time.time()
    records.append(asdict(info))
    data_root().mkdir(parents=True, exist_ok=True)
    atomic_write_json(_settings_file(), {"sources": records})
    return info


def remove_source(text: str | Path) -> bool:
    """Forget a folder (its files are untouched); whether it was registered."""
    folder = Path(str(text)).expanduser().resolve()
    records = _records()
    kept = [r for r in records if Path(str(r.get("path"))) != folder]
    if len(kept) == len(records):
        return False
    atomic_write_json(_settings_file(), {"sources": kept})
    return True


def list_sources() -> list[SourceInfo]:
    """The registered folders as described when added (a folder gone since is marked so)."""
    out = []
    for r in _records():
        path = Path(str(r.get("path")))
        if not path.is_dir():
            out.append(SourceInfo(str(path), "missing: the folder is gone", 0, False, float(r.get("added", 0))))
            continue
        fmt = str(r.get("format", "?"))
        kind = r.get("kind") if r.get("kind") in ("folder", "deepglobe") else \
            "deepglobe" if fmt.startswith("DeepGlobe") else "folder"  # a record written before kinds were kept
        bands = r.get("bands") if isinstance(r.get("bands"), list) else None
        not_images = r.get("not_images", 0)
        out.append(SourceInfo(str(path), fmt, int(r.get("images", 0)), r.get("labels") is True,
                              float(r.get("added", 0)), kind=kind, bands=bands,
                              not_images=not_images if type(not_images) is int and not_images >= 0 else 0))
    return out
