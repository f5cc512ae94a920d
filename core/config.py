"""Validated pretraining configuration.

A config is loaded from YAML, patched with dotted ``key=value`` overrides from the command line, and validated
in one place, so that a bad value fails before any compute with one line that names the field.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent  # the presets in configs/ are found from any folder

ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and says why."""


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


def held_out_scenes(test: list[str], val: list[str]) -> None:
    """``test_scenes`` and ``val_scenes`` name disjoint scenes; the ValueError says which name is in both."""
    both = sorted(set(test) & set(val))
    if both:
        raise ValueError(f"{', '.join(both)} is named in both test_scenes and val_scenes")


class ModelConfig(_Section):
    encoder: str = "resnet18"
    weights: str | None = Field(None, description="local safetensors checkpoint to start the encoder from")
    proj_hidden: int = Field(2048, ge=1, le=65536)
    proj_dim: int = Field(128, ge=1, le=65536)
    moco_momentum: float = Field(0.99, ge=0.0, le=1.0)
    queue_size: int = Field(4096, ge=1, le=1_048_576, description="MoCo negatives kept (at most about a million)")

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        if v not in ENCODERS:
            raise ValueError(f"unknown encoder {v!r}; choose one of {', '.join(ENCODERS)}")
        return v


class LossConfig(_Section):
    name: Literal["info_nce", "false"] = "false"
    temperature: float = 0.5
    alpha: float = 1.0
    threshold: float = 0.9
    selection: Literal["global", "per_anchor"] = "global"
    topk: int = Field(1, ge=1)
    symmetric: bool = False

    @field_validator("name", mode="before")
    @classmethod
    def _yaml_false_is_a_name(cls, v: Any) -> Any:
        """YAML reads ``name: false`` as the boolean; here it names the FALSE loss."""
        return "false" if v is False else v

    @field_validator("temperature")
    @classmethod
    def _positive_temperature(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"must be > 0, got {v}")
        return v

    @field_validator("alpha")
    @classmethod
    def _alpha_range(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"must be in [0, 1], got {v}")
        return v

    @field_validator("threshold")
    @classmethod
    def _threshold_range(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"must be in (0, 1], got {v}")
        return v


PRETRAIN_DATASETS = ("synthetic", "folder", "deepglobe", "potsdam", "vaihingen", "loveda")
SPLIT_NAMES = ("train", "val", "test")


class DataConfig(_Section):
    """What pretraining reads. Labeled sets (every name but ``folder`` without a class table) are split by scene
    exactly as fine-tuning splits them (same ``seed``, ``val_fraction``, ``test_fraction``), and only the scenes
    of ``pretrain_splits`` enter pretraining, so test scenes never reach the encoder. The loss never sees a label;
    they are kept to score the flagged pairs."""

    name: Literal["synthetic", "folder", "deepglobe", "potsdam", "vaihingen", "loveda"] = "synthetic"
    root: str | None = Field(None, description="image folder (folder) or data set folder in its published layout")
    class_table: str | None = Field(None, description="YAML class table: makes a folder a labeled set")
    num_tiles: int = Field(2000, ge=2, le=10_000_000, description="synthetic set size")
    tile_size: int = Field(256, ge=16, le=8192)
    tile_overlap: int = Field(0, ge=0, description="labeled sets: overlap of tiles cut from whole scenes")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="labeled sets: validation share of the scenes")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="labeled sets: test share of the scenes")
    test_scenes: list[str] = Field(default_factory=list, description="labeled sets: scenes held out for test, by "
                                   "name or folder (e.g. tile_3); overrides test_fraction")
    val_scenes: list[str] = Field(default_factory=list, description="labeled sets: scenes for validation, by name or "
                                  "folder; overrides val_fraction")
    pretrain_splits: list[Literal["train", "val", "test"]] = Field(
        default_factory=lambda: ["train"], description="labeled sets: the splits whose scenes are pretrained on")
    image_size: int = Field(96, ge=16, le=4096, description="side of each augmented view")
    crop_scale_min: float = Field(0.2, gt=0.0, le=1.0)
    color_strength: float = Field(1.0, ge=0.0)
    blur_prob: float = Field(0.5, ge=0.0, le=1.0)
    seed: int = Field(0, description="synthetic generation and the scene split (not the training seed)")

    @field_validator("pretrain_splits")
    @classmethod
    def _some_splits(cls, v: list[str]) -> list[str]:
        distinct(v, 1, "of train, val, test")
        return [s for s in SPLIT_NAMES if s in v]

    @model_validator(mode="after")
    def _needs_root(self) -> "DataConfig":
        held_out_scenes(self.test_scenes, self.val_scenes)
        if self.name == "folder" and not self.root:
            raise ValueError("name=folder needs data.root, the image folder to pretrain on")
        if self.name not in ("synthetic", "folder") and not self.root:
            raise ValueError(f"name={self.name} needs data.root, the data set folder")
        if self.tile_overlap >= self.tile_size:
            raise ValueError("data.tile_overlap must be smaller than data.tile_size")
        return self

    @property
    def labeled(self) -> bool:
        """Whether tiles carry labels (for scoring flags; the loss never sees them) and a scene split."""
        return self.name != "folder" or bool(self.class_table)

    def as_seg(self) -> "SegDataConfig":
        """The labeled-set view of these tiles: the same scenes, tiles and split as fine-tuning would see."""
        return SegDataConfig(name=self.name, root=self.root, class_table=self.class_table, num_tiles=self.num_tiles,
                             tile_size=self.tile_size, tile_overlap=self.tile_overlap, val_fraction=self.val_fraction,
                             test_fraction=self.test_fraction, test_scenes=self.test_scenes,
                             val_scenes=self.val_scenes, seed=self.seed)


def upgrade_run_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A pretraining run's stored config as today's schema reads it (in place).

    Runs made before ``data.pretrain_splits`` existed pretrained on every tile; without this they would be read
    with today's default (the training split) and their tile indices would point at other tiles.
    """
    data = raw.get("data")
    if isinstance(data, dict) and "pretrain_splits" not in data:
        data["pretrain_splits"] = list(SPLIT_NAMES)
    return raw


class TrainConfig(_Section):
    batch_size: int = Field(64, le=65536, description="images per step; each gives two views")
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, ge=1)
    optimizer: Literal["lars", "adamw", "sgd"] = "lars"
    lr: float = Field(0.3, gt=0.0, description="base learning rate for batch 256 (scaled linearly)")
    weight_decay: float = Field(1e-6, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    warmup_steps: int = Field(10, ge=0)
    warmup_epochs: float | None = Field(None, ge=0, description="overrides warmup_steps when set")
    log_every: int = Field(1, ge=1)
    ckpt_every: int = Field(50, ge=1)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    compile: bool = False

    @field_validator("batch_size")
    @classmethod
    def _batch_at_least_two(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"must be at least 2 (a contrastive batch needs negatives), got {v}")
        return v

    @model_validator(mode="after")
    def _has_length(self) -> "TrainConfig":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set train.epochs or train.max_steps")
        return self


class PretrainConfig(_Section):
    method: Literal["simclr", "moco"] = "simclr"
    seed: int = 0
    name: str | None = Field(None, description="run name; a unique suffix is added")
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig(max_steps=100)

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> "PretrainConfig":
        if self.method == "moco" and self.model.queue_size < self.train.batch_size:
            raise ValueError(f"model.queue_size ({self.model.queue_size}) must hold at least one batch "
                             f"(train.batch_size {self.train.batch_size})")
        return self


# ----------------------------------------------------------------------------------------------------------------
# Loading

def _parse_value(text: str) -> Any:
    """Read an override value the way YAML would (numbers, booleans, null), strings otherwise."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (in place) and return it. ``key+=[x, y]`` extends a list
    setting instead of replacing it (e.g. a comparison's ``pretrain_overrides``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. loss.alpha=0.9")
        key, value = item.split("=", 1)
        extend = key.endswith("+")
        parts = key.strip().rstrip("+").split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
            node = child
        parsed = _parse_value(value)
        if extend:
            current = node.get(parts[-1]) or []
            if not isinstance(current, list):
                raise ConfigError(f"override {key}: {'.'.join(parts)} is not a list, so it cannot be extended")
            parsed = [*current, *(parsed if isinstance(parsed, list) else [parsed])]
        node[parts[-1]] = parsed
    return raw


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown setting"
    if first["type"] == "literal_error":
        msg = f"{msg}, got {first.get('input')!r}"
    return f"{field}: {msg}"


def validate_config(raw: dict[str, Any], model: type[BaseModel] = PretrainConfig) -> Any:
    """Validate a nested dict; raise ConfigError with a one-line message that names the field."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None,
                model: type[BaseModel] = PretrainConfig) -> Any:
    """Load a YAML config file (or the defaults when path is None), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file() and not p.is_absolute() and (REPO_ROOT / p).is_file():
            p = REPO_ROOT / p  # a preset named as in the README (configs/...) from any folder
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {p} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
        except yaml.YAMLError as err:
            first = " ".join(str(err).split())
            raise ConfigError(f"config file {p} is not valid YAML: {first}") from None
        except OSError as err:
            raise ConfigError(f"config file {p} cannot be read: {err.strerror or err}") from None
        if raw is None:
            raise ConfigError(f"config file {p} is empty; start from one of configs/*.yaml")
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {p} must hold a mapping of settings")
    apply_overrides(raw, overrides or [])
    return validate_config(raw, model)


def config_to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# ----------------------------------------------------------------------------------------------------------------
# Segmentation (fine-tuning and evaluation)

SEG_DATASETS = ("synthetic", "potsdam", "vaihingen", "deepglobe", "loveda", "folder")


class SegDataConfig(_Section):
    name: Literal["synthetic", "potsdam", "vaihingen", "deepglobe", "loveda", "folder"] = "synthetic"
    root: str | None = Field(None, description="data set folder in its published layout")
    class_table: str | None = Field(None, description="YAML class table for name=folder")
    num_tiles: int = Field(2000, ge=2, le=10_000_000, description="synthetic set size")
    tile_size: int = Field(256, ge=16, le=8192, description="tiles cut from whole scenes")
    tile_overlap: int = Field(0, ge=0)
    crop_size: int = Field(256, ge=16, le=8192, description="training crop")
    label_fraction: float = Field(1.0, gt=0.0, le=1.0, description="seeded fraction of training tiles with labels")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="held-out share when the data set has no split")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_scenes: list[str] = Field(default_factory=list, description="labeled sets: scenes held out for test, by "
                                   "name or folder (e.g. tile_3); overrides test_fraction")
    val_scenes: list[str] = Field(default_factory=list, description="labeled sets: scenes for validation, by name or "
                                  "folder; overrides val_fraction")
    eroded: bool = Field(False, description="Potsdam/Vaihingen: use the eroded-boundary labels")
    seed: int = 0

    @model_validator(mode="after")
    def _needs_root(self) -> "SegDataConfig":
        held_out_scenes(self.test_scenes, self.val_scenes)
        if self.name != "synthetic" and not self.root:
            raise ValueError(f"name={self.name} needs data.root, the data set folder")
        if self.name == "folder" and not self.class_table:
            raise ValueError("name=folder needs data.class_table, a YAML table of class names and colours")
        if self.tile_overlap >= self.tile_size:
            raise ValueError("data.tile_overlap must be smaller than data.tile_size")
        return self


class SegModelConfig(_Section):
    arch: Literal["deeplabv3plus", "unet", "fpn"] = "deeplabv3plus"
    encoder: str = "resnet18"
    init: str = Field("random", description="'random', a pretraining run folder, or a checkpoint file")
    output_stride: Literal[8, 16] = 16
    aux_head: bool = False
    decoder_channels: int | None = Field(None, ge=8, description="DeepLabV3+ ASPP width (paper: 512)")

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        return ModelConfig._known_encoder(v)


class FinetuneTrainConfig(_Section):
    protocol: Literal["frozen", "full"] = Field("full", description="frozen: the paper's linear-style protocol")
    batch_size: int = Field(16, ge=1, le=65536)
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    encoder_lr_scale: float = Field(0.1, ge=0.0, description="full protocol: encoder lr = lr * this")
    weight_decay: float = Field(1e-4, ge=0.0)
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: loss weight per class ~ 1/sqrt(its pixel share in training), for rare classes")
    eval_every: int = Field(100, ge=1, description="steps between validations")
    test_tile: int = Field(512, ge=32, le=8192, multiple_of=32, description="test: sliding window side (core.segment's)")
    test_overlap: float = Field(0.25, ge=0.0, lt=1.0, description="test: window overlap, a fraction of the window")
    log_every: int = Field(10, ge=1)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    @model_validator(mode="after")
    def _has_length(self) -> "FinetuneTrainConfig":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set train.epochs or train.max_steps")
        return self


class FinetuneConfig(_Section):
    seed: int = 0
    name: str | None = None
    model: SegModelConfig = SegModelConfig()
    data: SegDataConfig = SegDataConfig()
    train: FinetuneTrainConfig = FinetuneTrainConfig(max_steps=200)


# ----------------------------------------------------------------------------------------------------------------
# Linear probe (fast evaluation of a frozen encoder)

class ProbeModelConfig(_Section):
    encoder: str = "resnet18"
    init: str = Field("random", description="'random', a pretraining run folder, or a checkpoint file")
    input_scale: float = Field(1.0, gt=0.0, le=1.0, description="resize images by this before the encoder")

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        return ModelConfig._known_encoder(v)


class ProbeTrainConfig(_Section):
    epochs: int = Field(30, ge=1, le=10_000, description="passes of the linear head over the cached features")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.01, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    label_stride: int = Field(4, ge=1, le=32, description="train against labels subsampled by this factor")
    device: str = "auto"
    test_tile: int = Field(512, ge=32, le=8192, multiple_of=32, description="test: sliding window side (core.segment's)")
    test_overlap: float = Field(0.25, ge=0.0, lt=1.0, description="test: window overlap, a fraction of the window")


class ProbeConfig(_Section):
    """A per-pixel linear probe: frozen encoder features (last two stages, stride 16), a 1x1 convolution."""

    seed: int = 0
    name: str | None = None
    model: ProbeModelConfig = ProbeModelConfig()
    data: SegDataConfig = SegDataConfig()
    train: ProbeTrainConfig = ProbeTrainConfig()
