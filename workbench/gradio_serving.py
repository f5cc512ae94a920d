"""What the Gradio demo serves with, apart from its page: the models (loaded once, every candidate for ``auto``),
the time a window costs here and the refusal it allows before decoding, the last results by file content, and the
request helpers (whose client has left, upload leftovers). ``workbench.gradio_app`` builds the page on these."""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported: no calls home, ever
os.environ.setdefault("GRADIO_HEARTBEAT_INTERVAL", "5")  # how soon a client's leaving is seen (Gradio's default 15 s)

import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from core.device import pick_device  # noqa: E402
from core.imaging.bands import card_bands  # noqa: E402
from core.imaging.imageio import ImageHeader, image_header  # noqa: E402
from core.seg.infer import count_windows  # noqa: E402
from core.seg.model_choice import ModelCache, given_model  # noqa: E402
from core.seg.resample import model_pixel_size, resample_factor, resampled_size  # noqa: E402
from core.seg.segmentation_result import Segmentation  # noqa: E402
from core.seg.segmodel import load_seg_model  # noqa: E402
from core.store.catalog import ModelEntry, segmentation_models  # noqa: E402
from core.store.checkpoint import CheckpointError  # noqa: E402
from core.store.file_versions import file_sha256  # noqa: E402

MIN_WINDOWS_TO_ESTIMATE = 16  # smaller images just run (the time budget still watches them)
CACHED_MODELS = 12  # auto scores every candidate per image: keep them all loaded rather than reload them
KEEP_RESULTS = 8  # results kept per (file content, settings) so a re-upload is instant


# ------------------------------------------------------------------------------------------------ model
def model_input_size(head: ImageHeader, card: dict[str, Any]) -> tuple[int, int]:
    """(width, height) a model will run on: the image's own, or resampled to the card's pixel size as
    ``core.seg.segment`` does."""
    factor = resample_factor(head.pixel_size_m, model_pixel_size(card))
    return (head.width, head.height) if factor is None else resampled_size(head.width, head.height, factor)


class Models:
    """The model the demo was started with, or every candidate for ``auto``; loaded once per process (the cache
    has its own lock; forward passes of concurrent requests run side by side), and the last results by file
    content."""

    def __init__(self, checkpoint: Path | str | None) -> None:
        self.device = pick_device()
        self.cache = ModelCache(size=CACHED_MODELS)
        self.given: ModelEntry | None = None
        self.entries: list[ModelEntry] = []
        if checkpoint is None or str(checkpoint) == "auto":
            self.entries = [e for e in segmentation_models() if e.card.get("kind") == "segmentation"]
            if not self.entries:
                raise CheckpointError("no segmentation model in checkpoints/ nor in runs/; pass --checkpoint PATH")
        else:
            path = Path(checkpoint)
            model, card = load_seg_model(path, device=self.device)  # its card checked there, classes included
            self.cache.put(path, self.device, model, card)
            self.given = given_model(path, card)
        self.lock = threading.Lock()
        self.results: dict[tuple[str, Any], Segmentation] = {}
        self._window_s: dict[tuple[str, int], float] = {}

    def seconds_per_window(self, entry: ModelEntry, tile: int) -> float:
        """What one window of ``tile`` pixels costs ``entry``'s model here (one timed batch, once per model and
        tile: models differ in size and in the pixel they read, ``input_scale``)."""
        key = (str(entry.path), tile)
        with self.lock:
            if key not in self._window_s:
                model, card = self.cache.load(entry.path, self.device)
                x = torch.zeros(2, len(card_bands(card)), tile, tile, device=self.device)
                with torch.inference_mode():
                    model(x[:1])  # warm-up
                    t0 = time.perf_counter()
                    model(x)
                    self._window_s[key] = (time.perf_counter() - t0) / 2
            return self._window_s[key]

    def refuse_if_too_slow(self, path: str, name: str, tile: int, overlap: float, tta: bool,
                           budget_s: float | None, budget_px: int) -> None:
        """gr.Error before decoding when an image's windows alone will clearly take longer than the budget, even on
        the candidate model that would be quickest (each at its own windows and cost per window; a GeoTIFF is resampled to a model's pixel size first). An image
        over the pixel budget is left to ``read_image``, whose refusal says so."""
        head = image_header(path)
        if budget_s is None or head is None or head.width * head.height > budget_px:
            return
        candidates = [self.given] if self.given is not None else self.entries
        counts = [count_windows(*reversed(model_input_size(head, e.card)), tile, overlap) * (2 if tta else 1)
                  for e in candidates]
        windows = min(counts)
        if windows < MIN_WINDOWS_TO_ESTIMATE:
            return
        try:
            need = min(n * self.seconds_per_window(e, tile) for n, e in zip(counts, candidates))
        except Exception:  # noqa: BLE001 - no estimate (e.g. a model that fails to load): the deadline watches
            return
        if need > 1.25 * budget_s:
            raise gr.Error(f"{name}: this image ({head.width}x{head.height}, {windows} windows) needs about "
                           f"{need:.0f} s on this machine, over the time budget of a request here ({budget_s:.0f} s): "
                           "use a smaller image or `python -m core.segment`, which has no time budget",
                           print_exception=False)

    @property
    def description(self) -> str:
        if self.given is None:
            return (f"auto: per image, the best domain fit of {len(self.entries)} model(s) "
                    f"({', '.join(e.label.removeprefix('shipped: ') for e in self.entries[:4])}"
                    f"{', ...' if len(self.entries) > 4 else ''}), on {self.device}")
        c = self.given.card
        return (f"`{self.given.path.name}`: {c.get('arch')} / {c.get('encoder')}, {len(c['classes'])} classes, "
                f"on {self.device}")

    @property
    def card(self) -> dict[str, Any] | None:
        return self.given.card if self.given is not None else None

    def remember(self, key: tuple[str, Any], seg: Segmentation) -> None:
        self.results[key] = seg
        while len(self.results) > KEEP_RESULTS:
            self.results.pop(next(iter(self.results)))


def file_digest(path: str | Path) -> str:
    """What a file is, whatever its upload name: a digest of its bytes (remembered per path, size and mtime)."""
    return file_sha256(path)


# ------------------------------------------------------------------------------------------------ the app
class Leaving:
    """Whose clients have gone. Gradio's public ``unload`` event fires for a session when its tab is closed or
    reloaded, or an API client's heartbeat stops; ``left`` then flags every request of that session still at
    work, and the work stops at its next batch of windows (its ``Deadline`` reads the flag). A caller without a
    heartbeat (plain HTTP on ``/call/segment``) fires no ``unload``: its request is held to the time budget only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._working: dict[str, set[threading.Event]] = {}

    @contextmanager
    def watch(self, session: str | None) -> Iterator[Callable[[], bool]]:
        """For one request of ``session``: a function that says whether its client has left."""
        flag = threading.Event()
        if session:
            with self._lock:
                self._working.setdefault(session, set()).add(flag)
        try:
            yield flag.is_set
        finally:
            if session:
                with self._lock:
                    flags = self._working.get(session, set())
                    flags.discard(flag)
                    if not flags:
                        self._working.pop(session, None)

    def left(self, session: str | None) -> None:
        with self._lock:
            for flag in self._working.pop(session or "", set()):
                flag.set()


def sweep_upload_leftovers(folder: Path | str | None = None, min_age_s: float = 60.0) -> int:
    """Delete the empty ``tmp*`` files gradio's upload parser leaves in its cache folder (hundreds after a few
    runs); only files untouched for ``min_age_s``, so an upload in progress is never touched. Returns how many."""
    folder = Path(folder or os.environ.get("GRADIO_TEMP_DIR", ""))
    if not folder.is_dir():
        return 0
    now, gone = time.time(), 0
    for p in folder.glob("tmp*"):
        try:
            st = p.lstat()
            if p.is_file() and not p.is_symlink() and st.st_size == 0 and now - st.st_mtime >= min_age_s:
                p.unlink()
                gone += 1
        except OSError:
            pass
    return gone
