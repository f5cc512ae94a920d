"""The segmentation configs: fine-tuning (data, model, training) and the linear probe."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import (SPLIT_UNIT_HELP, Bands, DeviceName, Seed, SplitUnit, Steps, _Section, _Tracked, check_split_unit,
                   fill_split_unit, held_out_scenes)
from .pretrain import ModelConfig


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
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="held-out share when the data set has no split; "
                                "0 (and no val_scenes): no validation, every labeled scene that is not a test scene "
                                "trains (fine-tuning then needs train.average_from)")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_scenes: list[str] = Field(default_factory=list, description="labeled sets: scenes held out for test, by "
                                   "name or folder (e.g. tile_3); overrides test_fraction")
    val_scenes: list[str] = Field(default_factory=list, description="labeled sets: scenes for validation, by name or "
                                  "folder; overrides val_fraction")
    split_unit: SplitUnit | None = Field(None, description=SPLIT_UNIT_HELP)
    bands: Bands = None
    eroded: bool = Field(False, description="Potsdam/Vaihingen: use the eroded-boundary labels")
    colour_jitter: float = Field(1.0, ge=0.0, le=4.0, description="fine-tuning: strength of the photometric "
                                 "distortion (1 = the mild MMSegmentation default, 0 = none, 3 = for scenes whose "
                                 "colours differ from the training scenes')")
    seed: Seed = 0

    @model_validator(mode="before")
    @classmethod
    def _unit_from_table(cls, raw: Any) -> Any:
        return fill_split_unit(raw)

    @model_validator(mode="after")
    def _needs_root(self) -> "SegDataConfig":
        held_out_scenes(self.test_scenes, self.val_scenes, self.test_fraction, self.val_fraction)
        check_split_unit(self.split_unit, self.name, self.class_table)
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
    input_scale: float = Field(1.0, gt=0.0, le=1.0, description="the model resizes each input by this before its "
                               "encoder and brings the mask back to the input's size: coarser pixels, less work "
                               "per window; raise data.crop_size and train.test_tile by 1/scale for more ground "
                               "at the same work (land cover at 0.5 m: 0.5 with 512 px crops)")

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        return ModelConfig._known_encoder(v)


SegLossName = Literal["ce", "ce+dice"]  # the fine-tuning losses core.seg.seg_loss builds


class FinetuneTrainConfig(_Tracked):
    protocol: Literal["frozen", "full"] = Field("full", description="frozen: the paper's linear-style protocol")
    batch_size: int = Field(16, ge=2, le=65536, description="tiles per step; at least 2: BatchNorm (the ASPP's "
                            "pooled branch sees one value per tile) cannot train on one")
    epochs: float | None = Field(None, gt=0, le=1e6)
    max_steps: Steps | None = None
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="peak learning rate (above 10 a run only diverges: a typed "
                      "1e9 launched and failed at its third step)")
    encoder_lr_scale: float = Field(0.1, ge=0.0, description="full protocol: encoder lr = lr * this")
    weight_decay: float = Field(1e-4, ge=0.0)
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: loss weight per class ~ 1/sqrt(its pixel share in training), for rare classes")
    loss: SegLossName = Field(
        "ce", description="ce: pixel cross-entropy; ce+dice: plus a Dice term, so small classes count per class")
    average_from: float | None = Field(
        None, gt=0.0, lt=1.0, description="full protocol: average the weights of every step after this fraction of "
        "the run (the learning rate stops decaying there) and use that mean, BatchNorm re-measured, as the run's "
        "model instead of the checkpoint with the best validation mIoU")
    eval_every: Steps = Field(100, description="steps between validations (and checkpoints; only checkpoints "
                            "without a validation split)")
    test_tile: int = Field(512, ge=32, le=8192, multiple_of=32, description="test: sliding window side (as core.segment)")
    test_overlap: float = Field(0.25, ge=0.0, lt=1.0, description="test: window overlap, a fraction of the window")
    log_every: Steps = 10
    device: DeviceName = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    @model_validator(mode="after")
    def _has_length(self) -> "FinetuneTrainConfig":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set train.epochs or train.max_steps")
        if self.average_from is not None and self.protocol == "frozen":
            raise ValueError("train.average_from needs protocol full: the frozen protocol keeps the encoder's "
                             "BatchNorm statistics, which averaging would measure again")
        return self


class FinetuneConfig(_Section):
    seed: Seed = 0
    name: str | None = None
    model: SegModelConfig = SegModelConfig()
    data: SegDataConfig = SegDataConfig()
    train: FinetuneTrainConfig = FinetuneTrainConfig(max_steps=200)

    @model_validator(mode="after")
    def _crop_survives_scale(self) -> "FinetuneConfig":
        if self.data.val_fraction == 0 and not self.data.val_scenes and self.train.average_from is None:
            raise ValueError("data.val_fraction: 0 leaves no validation scenes to choose the run's model by; set "
                             "train.average_from (e.g. 0.5), so that the model is the weight average of the last "
                             "steps, or give a validation share")
        # the input side smp requires (its check_input_shape; its U-Net takes any side): the encoder's stride
        stride = {"deeplabv3plus": self.model.output_stride, "fpn": 32}.get(self.model.arch)
        if stride and self.model.input_scale == 1.0 and self.data.crop_size % stride:  # else the model pads
            raise ValueError(f"data.crop_size: {self.data.crop_size} px is no multiple of {stride}, the stride of the "
                             f"{self.model.arch} model's encoder (model.output_stride {self.model.output_stride}); "
                             f"e.g. {max(stride, self.data.crop_size // stride * stride)}")
        inner = self.data.crop_size * self.model.input_scale
        if self.model.input_scale < 1.0 and inner < 32:
            raise ValueError(f"model.input_scale: a {self.data.crop_size} px crop at scale {self.model.input_scale:g} "
                             f"is {inner:.0f} px inside the model; the encoder needs at least 32 (raise "
                             "data.crop_size or model.input_scale)")
        return self


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


class ProbeTrainConfig(_Tracked):
    epochs: int = Field(30, ge=1, le=10_000, description="passes of the linear head over the cached features")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.01, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    label_stride: int = Field(4, ge=1, le=32, description="train against labels subsampled by this factor")
    device: DeviceName = "auto"
    test_tile: int = Field(512, ge=32, le=8192, multiple_of=32, description="test: sliding window side (as core.segment)")
    test_overlap: float = Field(0.25, ge=0.0, lt=1.0, description="test: window overlap, a fraction of the window")


class ProbeConfig(_Section):
    """A per-pixel linear probe: frozen encoder features (last two stages, stride 16), a 1x1 convolution."""

    seed: Seed = 0
    name: str | None = None
    model: ProbeModelConfig = ProbeModelConfig()
    data: SegDataConfig = SegDataConfig()
    train: ProbeTrainConfig = ProbeTrainConfig()
