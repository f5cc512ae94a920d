"""Baselines beside a score: a random encoder trained by the same recipe, and a shipped model, on the same scenes.

Why: "fine-tuned mIoU 45 %" says nothing about pretraining until it stands beside what a random encoder reaches by
the same recipe on the same test scenes. Such a baseline is a run like any other (fine-tuning or a linear probe):
the run's own config with ``model.init=random``, so the data set, the split (hence the test scenes), the protocol,
the steps and the seed are the same. It is found among the runs (any earlier run of that recipe from a random
encoder counts, launched from the app or typed on a command line), so it is computed once per recipe and kept in
the runs root; :func:`baseline_config` is what to launch when none exists. A baseline is shown only when its test
scenes are the run's (:func:`random_baseline` checks the scored scenes, not only the config).

The shipped models (``checkpoints/``) carry their own test score on the scenes their card names
(``ModelEntry.test_miou``); :func:`shipped_scores` gives it when those scenes are exactly the run's, and says why not
otherwise (other scenes, or scenes it trained on).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, FinetuneConfig, ProbeConfig, validate_config
from ..store.catalog import ModelEntry, segmentation_models
from ..store.runs import REPO_ROOT, Run
from ..store.run_state import SHOWN_LIVE
from .scene_role import scored_scenes_text

CONFIGS: dict[str, type] = {"finetune": FinetuneConfig, "probe": ProbeConfig}
# settings that do not change what is trained or how it is scored
IGNORED = (("name",), ("model", "init"), ("train", "device"), ("train", "log_every"))
RESULT = "test_metrics.json"  # fine-tuning's and the probe's test scores
VALIDATION = "confusion.json"  # fine-tuning's best validation, while it runs


def _path(value: Any) -> Any:
    """A data path as the engine reads it (relative to the repository, where launched runs start)."""
    if not isinstance(value, str) or not value:
        return value
    p = Path(value).expanduser()
    return str((p if p.is_absolute() else REPO_ROOT / p).resolve())


def recipe(kind: str, raw: dict[str, Any]) -> dict[str, Any] | None:
    """What decides a run's score, as a comparable dict: its validated config without the encoder, the name and
    where it ran; paths resolved. None for a config that does not validate (or a kind without baselines)."""
    model = CONFIGS.get(kind)
    if model is None or not isinstance(raw, dict):
        return None
    try:
        cfg = validate_config(_copy(raw), model)
    except ConfigError:
        return None
    out = cfg.model_dump(mode="json")
    for keys in IGNORED:
        part = out
        for k in keys[:-1]:
            part = part.get(k, {})
        part.pop(keys[-1], None)
    data = out["data"]
    data["root"] = _path(data.get("root")) if data.get("name") != "synthetic" else None
    data["class_table"] = _path(data.get("class_table"))
    return out


def _copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v for k, v in raw.items()}


def init_of(raw: dict[str, Any]) -> str:
    model = raw.get("model") if isinstance(raw, dict) else None
    return str(model.get("init", "random")) if isinstance(model, dict) else "random"


def baseline_config(kind: str, raw: dict[str, Any]) -> Any:
    """The random-encoder twin of a run's config: everything the same but ``model.init=random`` and the name."""
    twin = _copy(raw)
    twin.setdefault("model", {})["init"] = "random"
    twin["name"] = f"baseline-{raw.get('name') or kind}"
    return validate_config(twin, CONFIGS[kind])


@dataclass
class Baseline:
    """The random-encoder baseline of one run. ``state``: ``self`` (the run's encoder is random: it is the baseline),
    ``done`` (``record`` holds its scores of the same split), ``running``, ``unfinished`` (stopped, failed or died:
    resume it), ``not-yet`` (finished, but the split shown has no score yet), ``other-scenes`` (its scenes differ:
    not shown), ``none`` (no run of this recipe from a random encoder)."""

    state: str
    run: Run | None = None
    record: dict[str, Any] | None = None
    note: str = ""


def scores_of(run: Run) -> tuple[dict[str, Any] | None, str]:
    """A run's scores and which they are: the test scores, else (fine-tuning, while it runs) the best validation."""
    test = run.read_json(RESULT)
    if test is not None:
        return test, "test"
    val = run.read_json(VALIDATION)
    return (val, "val") if val is not None else (None, "")


def _same_scenes(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    a, b = mine.get("scenes") or [], theirs.get("scenes") or []
    return sorted(map(str, a)) == sorted(map(str, b)) and mine.get("split") == theirs.get("split")


PREFERRED = ("done", "running", "unfinished", "not-yet", "other-scenes")  # which twin stands beside a run
COMPARABLE = ("done", "running", "unfinished")  # twins that give (or can still give) a comparable score


def random_baseline(run: Run, runs: list[Run], which: str = "test") -> Baseline:
    """The run of the same recipe from a random encoder (``runs``: where to look), with its scores of ``which``
    (``test`` or ``val``, the split the run's shown score is of), checked to be of the same scenes. Of several such
    runs the most useful one: a comparable score, else one running, else one to resume, else (newest first) one
    that cannot be shown and why."""
    kind, raw = run.kind(), run.config()
    if init_of(raw) == "random":
        return Baseline("self", run, note="this run's encoder is random: it is the baseline of pretrained encoders "
                        "trained by the same recipe")
    key = recipe(kind, raw)
    if key is None:
        return Baseline("none", note=f"no baseline for a {kind} run whose config does not validate")
    twins = [r for r in runs if r.path != run.path and r.kind() == kind and init_of(r.config()) == "random"
             and recipe(kind, r.config()) == key]
    if not twins:
        return Baseline("none", note="no run of this recipe from a random encoder yet")
    mine, _ = scores_of(run)
    twins.sort(key=lambda r: -r.path.stat().st_mtime if r.path.exists() else 0)
    found = [_twin_baseline(twin, raw, mine, which) for twin in twins]
    return min(found, key=lambda b: PREFERRED.index(b.state))  # the first (newest) of the best state


def _twin_baseline(twin: Run, raw: dict[str, Any], mine: dict[str, Any] | None, which: str) -> Baseline:
    state = twin.state()
    if state in SHOWN_LIVE:
        return Baseline("running", twin, note=f"run {twin.id} is {state}")
    if state != "completed":
        return Baseline("unfinished", twin, note=f"run {twin.id} is {state}")
    record = twin.read_json(RESULT if which == "test" else VALIDATION)
    if record is None:
        return Baseline("not-yet", twin, note=f"run {twin.id} finished without {which} scores")
    if which == "test" and mine is not None and not _same_scenes(mine, record):
        return Baseline("other-scenes", twin, record, note=f"run {twin.id} was tested on other scenes (the data "
                        "changed since?): not comparable")
    scenes = record.get("scenes") or []
    data = raw.get("data") or {}
    named = scored_scenes_text(scenes, data.get("test_scenes"), unit=data.get("split_unit"))
    where = f"the same test scenes ({named})" if which == "test" and scenes else \
        "the same validation tiles" if which == "val" else f"the same {record.get('split', 'test')} tiles"
    return Baseline("done", twin, record, note=f"run {twin.id}: this run's config with a random encoder (seed "
                    f"{raw.get('seed', 0)}, one run), scored on {where}")


@dataclass
class ShippedScore:
    label: str
    miou: float | None  # on the run's scenes, when comparable
    note: str


def _data_of(card: dict[str, Any]) -> dict[str, Any]:
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    return data


def _same_data(card: dict[str, Any], data: dict[str, Any], classes: list[str]) -> bool:
    """A model of the same data set: its name, its classes, and for generated sets the same generated tiles."""
    theirs = _data_of(card)
    if theirs.get("name") != data.get("name"):
        return False
    names = [c.get("name") for c in card.get("classes") or [] if isinstance(c, dict)]
    if classes and names and list(names) != list(classes):
        return False
    if data.get("name") == "synthetic":  # scene names are tile numbers: the same only for the same generated set
        return all(theirs.get(k) == data.get(k) for k in ("num_tiles", "tile_size", "seed"))
    return True


# settings whose difference makes a shipped score a different recipe's (a review read a 40-step fine-tuning on 10 %
# of the labels as 11 points behind a 300-step model trained on all of them, with nothing said)
RECIPE_FIELDS = ((("data", "label_fraction"), "label fraction {}"), (("train", "max_steps"), "{} steps"),
                 (("train", "protocol"), "{} fine-tuning"), (("data", "crop_size"), "{} px crops"),
                 (("model", "arch"), "{}"), (("model", "encoder"), "{}"))


def _field(config: dict[str, Any], path: tuple[str, str]) -> Any:
    section = config.get(path[0]) if isinstance(config, dict) else None
    return section.get(path[1]) if isinstance(section, dict) else None


def recipe_differences(theirs: dict[str, Any], ours: dict[str, Any], kind: str = "finetune") -> str:
    """How a shipped model's recipe differs from a run's, in words: "trained with label fraction 1 (this run 0.1),
    300 steps (this run 40)"; "" when the settings compared are the same. A probe trains no encoder: said first."""
    said = ["a fine-tuned model, this run a linear probe of a frozen encoder"] if kind == "probe" else []
    for path, words in RECIPE_FIELDS if kind != "probe" else RECIPE_FIELDS[:1]:
        a, b = _field(theirs, path), _field(ours, path)
        if a is not None and b is not None and a != b:
            said.append(f"{words.format(f'{a:g}' if isinstance(a, float) else a)} (this run "
                        f"{f'{b:g}' if isinstance(b, float) else b})")
    return f"another recipe: {', '.join(said)}" if said else ""


def shipped_scores(record: dict[str, Any], data: dict[str, Any], models: list[ModelEntry] | None = None,
                   config: dict[str, Any] | None = None, kind: str = "finetune") -> list[ShippedScore]:
    """The shipped models of the run's data set and their test mIoU on the run's test scenes (from their cards:
    only when they were tested on exactly those scenes); otherwise the reason. With the run's ``config`` (and
    ``kind``), a note names where the shipped model's recipe differs (``recipe_differences``)."""
    scenes = sorted(map(str, record.get("scenes") or []))
    classes = list(record.get("classes") or [])
    out = []
    for entry in models if models is not None else segmentation_models():
        if not entry.shipped or not _same_data(entry.card, data, classes):
            continue
        name = entry.label.removeprefix("shipped: ")
        theirs = sorted(map(str, (entry.card.get("domain") or {}).get("test_scenes") or []))
        trained = set(map(str, (entry.card.get("evaluation") or {}).get("training_scenes") or []))
        seen = [s for s in scenes if s in trained]
        if seen:
            out.append(ShippedScore(name, None, f"trained on {len(seen)} of these test images: no fair score"))
        elif not scenes or record.get("split") != "test":
            out.append(ShippedScore(name, None, "this run has no test scenes to compare on"))
        elif theirs == scenes and entry.test_miou() is not None:
            how = {"full": "full fine-tuning", "frozen": "frozen-encoder fine-tuning"}.get(
                str(entry.card.get("protocol")), "fine-tuning")
            other = recipe_differences(entry.card.get("config") or {}, config, kind) if config is not None else ""
            same = scored_scenes_text(scenes, data.get("test_scenes"), unit=data.get("split_unit"))  # as the line above
            out.append(ShippedScore(name, entry.test_miou(), f"its card's test score on the same {same}; "
                                    f"{entry.card.get('arch', 'a segmentation model')}, {how}"
                                    + (f"; {other}" if other else "")))
        else:
            out.append(ShippedScore(name, None, f"tested on {len(theirs)} other images: not comparable"))
    return out


def launch_baseline(run: Run, runs: list[Run]) -> tuple[Run | None, str]:
    """The run's random-encoder baseline, once per recipe: an existing twin that gives (or still can give) a
    comparable score is kept (a stopped or failed one resumed); otherwise (none, or one finished without scores or
    on other scenes) a new one is started in the background (``core.store.launch``). (The baseline run or None,
    what happened in words.)"""
    from ..store import launch

    found = random_baseline(run, runs)
    if found.state == "self":
        return None, "its encoder is random: it is its own baseline"
    if found.state in ("done", "running") and found.run is not None:
        return found.run, f"its baseline exists: {found.note}"
    if found.state == "unfinished" and found.run is not None:
        launch.resume(found.run)
        return found.run, f"resumed its baseline ({found.note})"
    kind = run.kind()
    cfg = baseline_config(kind, run.config())
    twin = launch.launch(kind, cfg, name=cfg.name)
    why = f" ({found.note}, so it cannot stand beside this run)" if found.state in ("not-yet", "other-scenes") else ""
    return twin, f"launched its random-encoder baseline {twin.id} (the same settings from a random encoder){why}"


__all__ = ["COMPARABLE", "Baseline", "ShippedScore", "baseline_config", "launch_baseline", "random_baseline", "recipe",
           "recipe_differences", "scores_of", "shipped_scores"]
