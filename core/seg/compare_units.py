"""What a comparison keeps between runs and checks before it trusts a pretraining run: the finished units
(``units.jsonl``, so a resumed comparison skips them), the runs ``reuse`` names, and that no encoder saw a test scene.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import validate_config
from ..store.lifecycle import EARLY_ERRORS
from ..store.runs import Run, open_run, read_jsonl
from .compare_config import CompareConfig, band_label, split_variant
from .lineage import KEY, run_pretrain_scenes, seen_in_pretraining


STARTED = "started.jsonl"  # the run folder of every unit started at once with others (``unit_jobs``)


class CompareError(RuntimeError):
    """The comparison cannot go on; one line says why (finished units stay in the run folder)."""


class Units:
    """The finished pieces of a comparison (``units.jsonl`` of its run folder), so a resumed one skips them."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.done = {self._key(u): u for u in read_jsonl(run.path / "units.jsonl")}
        self.added = 0  # units computed by this process (0: a resumed comparison that was already complete)

    @staticmethod
    def _key(u: dict[str, Any]) -> tuple:
        return (u.get("kind"), u.get("method"), u.get("pretrain_seed"), u.get("seed"))

    def get(self, kind: str, method: str, pretrain_seed: int, seed: int | None = None) -> dict[str, Any] | None:
        return self.done.get((kind, method, pretrain_seed, seed))

    def add(self, unit: dict[str, Any]) -> None:
        self.run.append_jsonl("units.jsonl", [unit])
        self.done[self._key(unit)] = unit
        self.added += 1

    def mark_started(self, key: tuple, path: Path) -> None:
        """A unit's run folder, once made (``started.jsonl``): a unit cut short by a stop is continued there."""
        kind, method, pretrain_seed, seed = key
        self.run.append_jsonl(STARTED, [{"kind": kind, "method": method, "pretrain_seed": pretrain_seed,
                                         "seed": seed, "run": str(path)}])

    def _last_started(self, key: tuple) -> Run | None:
        """The run of the unit's last recorded start, when its folder is there and no process writes it."""
        rows = [r for r in read_jsonl(self.run.path / STARTED) if self._key(r) == tuple(key)]
        if not rows or not Path(rows[-1]["run"]).is_dir():
            return None
        run = Run(Path(rows[-1]["run"]))
        return None if run.is_live() else run

    def cut_short(self, key: tuple) -> Path | None:
        """The run folder of a unit that started and did not finish (stopped, failed or died; not live), if any."""
        run = self._last_started(key)
        return run.path if run is not None and run.state() in ("stopped", "failed", "died") else None

    def completed(self, key: tuple, cfg: Any) -> Path | None:
        """The run folder of a unit that completed with ``cfg`` and was not recorded (the comparison killed between
        the two), if any: it is recorded from there, not trained again. An evaluation needs its test scores."""
        run = self._last_started(key)
        if run is None or run.state() != "completed":
            return None
        if key[0] == "eval" and run.read_json("test_metrics.json") is None:
            return None
        try:
            return run.path if validate_config(run.stored_config(), type(cfg)) == cfg else None
        except EARLY_ERRORS:
            return None


def reused_run(cfg: CompareConfig, method: str, pretrain_seed: int) -> Path | None:
    """The pretraining run ``reuse`` names for a unit (``method@seed`` or ``method`` for the first seed; with band
    sets the method is ``method@R+G+B+NIR``); one trained on other bands is refused."""
    key = f"{method}@{pretrain_seed}"
    path = None
    if key in cfg.reuse:
        path = open_run(cfg.reuse[key]).path
    elif method in cfg.reuse and pretrain_seed == cfg.pretrain_seeds[0]:
        path = open_run(cfg.reuse[method]).path
    if path is not None:
        _check_reused_bands(cfg, method, path)
    return path


def _check_reused_bands(cfg: CompareConfig, method: str, path: Path) -> None:
    from ..imaging.bands import RGB
    from ..ssl.models import checkpoint_bands

    label = split_variant(method)[1]
    want = next((b for b in cfg.bands if band_label(b) == label), None) if label else None
    if want is not None and not all(isinstance(b, str) for b in want):
        return  # indices: the run's own names are what they resolved to
    expected = list(want) if want is not None else list(RGB)
    made = checkpoint_bands(path / "checkpoints" / "encoder.safetensors")
    if made != expected:
        raise CompareError(f"{method}: reused run {path.name} was pretrained on bands {', '.join(made)}, this "
                           f"unit reads {', '.join(expected)}")


def check_no_leak(run_path: Path, test_scenes: list[str], method: str) -> None:
    """A pretraining run that saw a test scene would make every score of its encoder meaningless."""
    leaked = sorted(seen_in_pretraining({KEY: run_pretrain_scenes(run_path) or []}, list(test_scenes)) or [])
    if leaked:
        raise CompareError(f"{method}: pretraining run {run_path.name} trained on test scene(s) "
                           f"{', '.join(leaked[:5])}; set its data.pretrain_splits to [train] (or [train, val])")
