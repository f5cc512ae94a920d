"""The pretraining config: model, FALSE loss, data and training sections of ``PretrainConfig``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..store.old_runs import as_made
from .base import (SPLIT_UNIT_HELP, Bands, DeviceName, ENCODERS, Seed, SplitUnit, Steps, StepsOrOff, _Section, _Tracked,
                   check_split_unit, distinct, fill_split_unit, held_out_scenes)

if TYPE_CHECKING:
    from .seg import SegDataConfig


class ModelConfig(_Section):
    encoder: str = "resnet18"
    weights: str | None = Field(None, description="local safetensors checkpoint to start the encoder from")
    proj_hidden: int = Field(2048, ge=1, le=65536)
    proj_dim: int = Field(128, ge=1, le=65536)
    moco_momentum: float = Field(0.99, ge=0.0, le=1.0)
    queue_size: int = Field(4096, ge=1, le=1_048_576, description="MoCo negatives kept (at most about a million)")
    moco_shuffle_bn: bool = Field(True, description="MoCo: keys computed in a shuffled order with BatchNorm over "
                                  "sub-batches (or per rank), so a key never shares batch statistics with its own "
                                  "query (the MoCo paper's shuffle-BN); false: the whole key batch at once")
    moco_bn_splits: int | None = Field(None, ge=1, le=64, description="MoCo shuffle-BN: BatchNorm sub-batches per "
                                       "device (default: 1 per rank under torchrun; on one device 2-8, of at "
                                       "least 32 images where the batch allows)")

    @model_validator(mode="after")
    def _head_fits(self) -> "ModelConfig":
        """The projection head's weights (hidden x (features + out), features at most 2048) bounded before any
        allocation: 100 M parameters, 25x SimCLR's, already take 1.6 GB with their gradients and optimizer state."""
        params = self.proj_hidden * (2048 + self.proj_dim)
        if params > 100_000_000:
            raise ValueError(f"proj_hidden x proj_dim: a projection head of {self.proj_hidden} x "
                             f"{self.proj_dim} has up to {params / 1e6:,.0f} M weights; at most 100 M fit a training "
                             "run here (SimCLR's is 2048 x 128)")
        return self

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        if v not in ENCODERS:
            raise ValueError(f"unknown encoder {v!r}; choose one of {', '.join(ENCODERS)}")
        return v


class LossConfig(_Section):
    """The contrastive loss. ``name=false`` handles false negatives by two choices: a ``detector`` (which negatives
    are likely false) and a ``treatment`` (what the loss does with them); FALSE is ``fnsd`` + ``fncc``. ``dcl`` is the
    debiased loss with the class prior ``tau_plus``; ``info_nce`` the plain one."""

    name: Literal["info_nce", "false", "dcl"] = "false"
    temperature: float = 0.5
    alpha: float = 1.0
    threshold: float = 0.9
    selection: Literal["global", "per_anchor"] = "global"
    topk: int = Field(1, ge=1)
    symmetric: bool = False
    detector: Literal["fnsd", "nearest", "support", "oracle"] = Field(
        "fnsd", description="fnsd (FALSE), nearest (the encoder's most similar negatives), support (FNC's support "
        "views), oracle (same dominant label class: labeled sets only, the ceiling, not a method)")
    treatment: Literal["fncc", "eliminate", "attract"] = Field(
        "fncc", description="fncc (FALSE's calibration), eliminate (out of the denominator), attract (extra positives)")
    similarity: float | None = Field(None, ge=-1.0, le=1.0, description="nearest/support: flag every negative at or "
                                     "above this cosine instead of the topk most similar")
    support_views: int = Field(2, ge=1, le=8, description="support: extra augmented views of each image")
    tau_plus: float = Field(0.1, gt=0.0, lt=1.0, description="dcl: the class prior, the share of negatives that are "
                            "of the anchor's class")

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
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="labeled sets: validation share of the scenes "
                                "(as fine-tuning splits them: a comparison copies it here)")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="labeled sets: test share of the scenes")
    test_scenes: list[str] = Field(default_factory=list, description="labeled sets: scenes held out for test, by "
                                   "name or folder (e.g. tile_3); overrides test_fraction")
    val_scenes: list[str] = Field(default_factory=list, description="labeled sets: scenes for validation, by name or "
                                  "folder; overrides val_fraction")
    pretrain_splits: list[Literal["train", "val", "test"]] = Field(
        default_factory=lambda: ["train"], description="labeled sets: the splits whose scenes are pretrained on")
    split_unit: SplitUnit | None = Field(None, description=SPLIT_UNIT_HELP)
    bands: Bands = None
    image_size: int = Field(96, ge=16, le=4096, description="side of each augmented view")
    crop_scale_min: float = Field(0.2, gt=0.0, le=1.0)
    color_strength: float = Field(1.0, ge=0.0)
    blur_prob: float = Field(0.5, ge=0.0, le=1.0)
    seed: Seed = Field(0, description="synthetic generation and the scene split (not the training seed)")

    @model_validator(mode="before")
    @classmethod
    def _unit_from_table(cls, raw: Any) -> Any:
        return fill_split_unit(raw)

    @field_validator("pretrain_splits")
    @classmethod
    def _some_splits(cls, v: list[str]) -> list[str]:
        distinct(v, 1, "of train, val, test")
        return [s for s in SPLIT_NAMES if s in v]

    @model_validator(mode="after")
    def _needs_root(self) -> "DataConfig":
        held_out_scenes(self.test_scenes, self.val_scenes, self.test_fraction, self.val_fraction)
        check_split_unit(self.split_unit, self.name, self.class_table)
        if self.name == "folder" and not self.root:
            raise ValueError("name=folder needs data.root, the image folder to pretrain on")
        if not self.labeled and (self.test_scenes or self.val_scenes):
            raise ValueError(f"data.{'test' if self.test_scenes else 'val'}_scenes: an image folder without a class "
                             "table has no split, so every image is pretrained on, those too; give data.class_table "
                             "to hold them out, or remove them")
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
        from .seg import SegDataConfig  # the segmentation sections build on these

        return SegDataConfig(name=self.name, root=self.root, class_table=self.class_table, num_tiles=self.num_tiles,
                             tile_size=self.tile_size, tile_overlap=self.tile_overlap, val_fraction=self.val_fraction,
                             test_fraction=self.test_fraction, test_scenes=self.test_scenes,
                             val_scenes=self.val_scenes, split_unit=self.split_unit, bands=self.bands,
                             seed=self.seed)


def upgrade_run_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A pretraining run's stored config as today's schema reads it (in place).

    Runs made before ``data.pretrain_splits`` existed pretrained on every tile; without this they would be read
    with today's default (the training split) and their tile indices would point at other tiles. MoCo runs made
    before ``model.moco_shuffle_bn`` ran their keys without it.
    """
    as_made(raw)  # data.split_unit
    data = raw.get("data")
    if isinstance(data, dict) and "pretrain_splits" not in data:
        data["pretrain_splits"] = list(SPLIT_NAMES)
    model = raw.get("model")
    if raw.get("method") == "moco" and isinstance(model, dict) and "moco_shuffle_bn" not in model:
        model["moco_shuffle_bn"] = False  # MoCo runs made before shuffle-BN resume as they were trained
    return raw


class TrainConfig(_Tracked):
    batch_size: int = Field(64, le=65536, description="images per step; each gives two views")
    epochs: float | None = Field(None, gt=0, le=1e6)
    max_steps: Steps | None = None
    optimizer: Literal["lars", "adamw", "sgd"] = "lars"
    lr: float = Field(0.3, gt=0.0, le=10.0, description="base learning rate for batch 256 (scaled linearly; the "
                      "papers use 0.03-0.3, and above 10 a run only diverges)")
    weight_decay: float = Field(1e-6, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    warmup_steps: StepsOrOff = 10
    warmup_epochs: float | None = Field(None, ge=0, le=1e6, description="overrides warmup_steps when set")
    log_every: Steps = 1
    ckpt_every: Steps = 50
    knn_every: StepsOrOff = Field(0, description="every N steps, kNN accuracy of the encoder's features on labeled "
                           "tiles of the pretraining data (queries against a bank from other scenes; the loss never "
                           "reads their labels; 0 = off; data without labels: off, said in the log)")
    device: DeviceName = "auto"
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
    method: str = Field("simclr", description="a registered contrastive method (core.ssl.registry): simclr, moco")
    seed: Seed = 0
    name: str | None = Field(None, description="run name; a unique suffix is added")
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig(max_steps=100)

    @field_validator("method")
    @classmethod
    def _registered(cls, v: str) -> str:
        from ..ssl.registry import method_names  # the plug-ins (core.ssl.registry) say which methods exist

        if v not in method_names():
            raise ValueError(f"unknown method {v!r}; choose from {', '.join(method_names())}")
        return v

    @model_validator(mode="after")
    def _method_fits(self) -> "PretrainConfig":
        """What only the method knows it needs (MoCo: a queue that holds a batch, sub-batches for shuffle-BN)."""
        from ..ssl.registry import get_method

        get_method(self.method).check(self)
        return self

    @model_validator(mode="after")
    def _false_negative_handling_fits(self) -> "PretrainConfig":
        """A detector or treatment that cannot work with this data and batch is refused before anything starts."""
        lc = self.loss
        if lc.name != "false":
            for key, default in (("detector", "fnsd"), ("treatment", "fncc")):
                if getattr(lc, key) != default:
                    raise ValueError(f"loss.{key}={getattr(lc, key)} needs loss.name=false (it is {lc.name})")
            return self
        if lc.detector == "oracle" and not self.data.labeled:
            raise ValueError("loss.detector=oracle reads the labels, and this data set has none (a folder without "
                             "data.class_table): choose another detector or a labeled set")
        from ..ssl.registry import get_method

        negatives, where = get_method(self.method).negatives(self)
        if lc.topk > negatives:  # the loss refuses it under every detector: refused here, before a run folder
            raise ValueError(f"loss.topk ({lc.topk}) is more than the negatives of an anchor ({where} = {negatives})")
        ranks_all = (lc.detector in ("nearest", "support") and lc.similarity is None
                     or lc.detector == "fnsd" and lc.selection == "per_anchor")  # (fnsd global: a share of the batch)
        if lc.treatment == "eliminate" and lc.topk >= negatives and ranks_all:  # ran with a loss of 0, said nowhere
            raise ValueError(f"loss.topk ({lc.topk}) under loss.treatment=eliminate takes every negative of an anchor "
                             f"({where} = {negatives}) out of the loss: it is 0 at every step and nothing is learned; "
                             "choose a smaller loss.topk")
        if lc.detector == "support" and self.train.batch_size < 4:
            raise ValueError(f"loss.detector=support needs train.batch_size of at least 4 (it is "
                             f"{self.train.batch_size}): with fewer images the support views have nothing to rank")
        return self
