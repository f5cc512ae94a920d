"""What every config section shares: strict sections (unknown keys are errors, retired keys dropped), the option
lists read from their ``Literal``s, and the error type whose one line names the field.
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..repo import in_repo

ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and says why.

    ``problems`` holds every wrong field of one validation as (dotted field, reason), so a form can show each
    beside its own widget at once; the message (what a command line prints) is the first of them, the others
    counted."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = problems if problems is not None else [("", message)]


RETIRED_KEYS = ("num_workers",)  # settings that nothing read; old run configs still hold them


class _Section(BaseModel):
    # allow_inf_nan=False: an infinite learning rate or a NaN threshold fails at load, not after a run folder exists
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, raw: Any) -> Any:
        """Old run folders keep loading: a retired setting is dropped, not refused as unknown."""
        if isinstance(raw, dict) and any(k in raw for k in RETIRED_KEYS):
            raw = {k: v for k, v in raw.items() if k not in RETIRED_KEYS}
        return raw


TrackerName = Literal["tensorboard", "mlflow"]


class _Tracked(_Section):
    """The ``train`` fields every trainer shares for the trackers researchers already use (core.store.trackers)."""

    trackers: list[TrackerName] = Field(
        default_factory=list, description="where the run's scalars, settings and flagged pairs also go: tensorboard "
        "(event files in the run folder), mlflow (a local store beside the runs, or train.mlflow_uri)")
    mlflow_uri: str | None = Field(None, max_length=2000, description="MLflow tracking URI (a server, a database); "
                                   "empty: the local store <runs root>/mlruns")

    @field_validator("trackers")
    @classmethod
    def _each_once(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"name each tracker once, got {v}")
        return v


def choices(model: type[BaseModel], field: str) -> list[str]:
    """The allowed values of a ``Literal`` setting, e.g. ``choices(PretrainConfig, "train.optimizer")``: what a form
    offers comes from the config itself, never retyped."""
    cls: Any = model
    *sections, name = field.split(".")
    for section in sections:
        cls = cls.model_fields[section].annotation
    values = get_args(cls.model_fields[name].annotation)
    if not values:
        raise TypeError(f"{field} is not a Literal setting")
    return list(values)


def distinct(values: list[Any], at_least: int, what: str) -> list[Any]:
    """A list setting that needs ``at_least`` entries, none twice; the ValueError says which rule broke."""
    if len(values) < at_least:
        raise ValueError(f"name at least {at_least} {what}, got {values}")
    if len(set(values)) != len(values):
        raise ValueError(f"a value is named twice: {values}")
    return values


def bands_field(v: Any) -> Any:
    """``data.bands`` as kept: names folded to ours (``near-infrared`` -> ``NIR``), indices as integers."""
    from ..imaging.bands import check_request  # numpy only; keeps this module light

    return check_request(v)


BANDS_HELP = ("the file's bands to use, in order, by name ([R, G, B, NIR]) or 0-based index ([0, 1, 2, 3]); "
              "unset: RGB by the one rule for every file")
# the ``data.bands`` setting of pretraining and fine-tuning alike: checked (and names folded) before the type check
Bands = Annotated[list[int | str] | None, BeforeValidator(bands_field), Field(description=BANDS_HELP)]


def _device_name(v: Any) -> Any:
    """Only the device kinds the engine runs on; anything else fails at load, not as a traceback at start."""
    if isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,2})?", v):
        return v
    raise ValueError(f"unknown device {v!r}; choose auto, cpu, cuda, cuda:N or mps")


DeviceName = Annotated[str, BeforeValidator(_device_name)]
# A count of steps: a billion is beyond any run, and every count derived from it stays an int64 (a run's status, the
# Runs table's columns, schedules), where an unbounded one broke the Runs table for every run beside it.
MAX_STEPS = 1_000_000_000
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
StepsOrOff = Annotated[int, Field(ge=0, le=MAX_STEPS)]


def total_steps(max_steps: int | None, epochs: float | None, steps_per_epoch: int) -> int:
    """A run's length: ``max_steps`` if set, else its epochs' steps, refused over ``MAX_STEPS`` like a set value."""
    if max_steps is not None:
        return max_steps
    assert epochs is not None  # the train sections refuse a config with neither
    steps = max(1, math.ceil(epochs * steps_per_epoch))
    if steps > MAX_STEPS:
        raise ConfigError(f"train.epochs: {epochs:g} epochs of {steps_per_epoch} steps are {steps:,} steps, more "
                          f"than {MAX_STEPS:,}")
    return steps


SplitUnit = Literal["file", "folder"]
SPLIT_UNIT_HELP = ("image folders with a class table: what the seeded split keeps whole, 'file' (each image) or "
                   "'folder' (each folder of images, e.g. a Dubai tile cut into 9); unset: the class table's group_by, "
                   "written into the run's config so that a later edit of the table cannot move its tiles")


def table_split_unit(class_table: Any) -> str | None:
    """The ``group_by`` of a class table file ('file' when it says none); None when the file cannot be read (building
    the data set then says why, naming the file)."""
    from ..store.file_versions import load_yaml

    try:
        raw = load_yaml(in_repo(str(class_table)).read_text(encoding="utf-8"))  # as core.data finds it
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None
    unit = raw.get("group_by", "file") if isinstance(raw, dict) else None
    return unit if unit in get_args(SplitUnit) else None


def fill_split_unit(raw: Any) -> Any:
    """A labeled image folder's split unit written down at load (a new dict when it changes): the class table's
    ``group_by`` where ``split_unit`` is unset."""
    if (isinstance(raw, dict) and raw.get("name") == "folder" and raw.get("class_table")
            and raw.get("split_unit") is None):
        unit = table_split_unit(raw["class_table"])
        if unit is not None:
            return {**raw, "split_unit": unit}
    return raw


def check_split_unit(unit: str | None, name: str, class_table: str | None) -> None:
    """``data.split_unit`` is refused where it means nothing: published sets keep their own scenes whole."""
    if unit is not None and not (name == "folder" and class_table):
        raise ValueError(f"data.split_unit applies to an image folder with a class table (name=folder and "
                         f"data.class_table), not to {name}{' without a class table' if name == 'folder' else ''}, "
                         "which keeps its own scenes whole: remove it (data.split_unit=null)")


# seeds feed generators as seed * 1,000,003 + step * 97 + ...: kept far below 2^63 whatever the step
Seed = Annotated[int, Field(ge=0, le=2**31 - 1, description="a random seed, 0 to 2^31 - 1")]


def held_out_scenes(test: list[str], val: list[str], test_fraction: float = 0.0, val_fraction: float = 0.0) -> None:
    """``test_scenes`` and ``val_scenes`` name disjoint scenes; the ValueError says which name is in both. The shares
    held out where no scene is named leave some scenes to train on: a review's 0.6 + 0.6 trained on 1 tile of 2,000
    without a word."""
    both = sorted(set(test) & set(val))
    if both:
        raise ValueError(f"{', '.join(both)} is named in both test_scenes and val_scenes")
    held = (0.0 if test else test_fraction) + (0.0 if val else val_fraction)
    if held >= 1.0:
        raise ValueError(f"data.val_fraction {val_fraction:g} + data.test_fraction {test_fraction:g} hold out every "
                         "scene of a set without its own split: together they must stay below 1, leaving scenes to "
                         "train on")
