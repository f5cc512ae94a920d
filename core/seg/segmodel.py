"""Segmentation models and their checkpoints (safetensors + a JSON card that says what the model is).

The card is the contract between fine-tuning and inference: architecture, encoder, classes with colours,
normalisation, the data it was trained on, its metrics and the command that made it. Loading checks the card
before any weight is touched and refuses a mismatch with a message that says what differs.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..store.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from ..config import ENCODERS
from ..data.augment import IMAGENET_MEAN, IMAGENET_STD
from ..imaging.bands import RGB, band_norm, card_bands, is_rgb
from ..ssl.models import load_encoder_weights

ARCHITECTURES = {"deeplabv3plus": smp.DeepLabV3Plus, "unet": smp.Unet, "fpn": smp.FPN}


class SegModel(nn.Module):
    """An smp segmentation network, plus the optional auxiliary FCN head of the paper's protocol.

    In training mode with an aux head, ``forward`` returns ``(logits, aux_logits)``; otherwise the logits alone.
    With ``input_scale`` < 1 the network sees the input resized by it and its logits come back at the input's size:
    the model is fed, scored and slid over images at their own pixel size, so nothing outside it needs to know.
    """

    def __init__(self, arch: str, encoder: str, num_classes: int, output_stride: int = 16,
                 aux_head: bool = False, decoder_channels: int | None = None, in_channels: int = 3,
                 input_scale: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < input_scale <= 1.0:
            raise ValueError(f"model.input_scale: {input_scale!r} is not in (0, 1]")
        self.input_scale = float(input_scale)
        if arch not in ARCHITECTURES:
            raise ValueError(f"model.arch: unknown architecture {arch!r}; choose {', '.join(ARCHITECTURES)}")
        if encoder not in ENCODERS:
            raise ValueError(f"model.encoder: unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
        kwargs: dict[str, Any] = dict(encoder_name=encoder, encoder_weights=None, classes=num_classes,
                                      in_channels=in_channels)
        if arch == "deeplabv3plus":
            kwargs["encoder_output_stride"] = output_stride
            kwargs["decoder_aspp_dropout"] = 0.1
            if decoder_channels:
                kwargs["decoder_channels"] = decoder_channels
        self.net = ARCHITECTURES[arch](**kwargs)
        self.aux: nn.Module | None = None
        if aux_head:
            stage3 = int(self.net.encoder.out_channels[-2])
            self.aux = nn.Sequential(nn.Conv2d(stage3, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256),
                                     nn.ReLU(inplace=True), nn.Dropout2d(0.1), nn.Conv2d(256, num_classes, 1))

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        size = x.shape[-2:]
        x, inner = self._shrink(x)
        if self.aux is None or not self.training:
            return self._grow(self.net(x), inner, size)
        feats = self.net.encoder(x)
        logits = self.net.segmentation_head(self.net.decoder(feats))
        return self._grow(logits, inner, size), self._grow(self.aux(feats[-2]), inner, size)

    def encoder_input(self, x: Tensor) -> Tensor:
        """What the encoder reads for input ``x`` (``x`` itself at scale 1): for measuring its features as
        segmentation sees them (``core.seg.domain``)."""
        return self._shrink(x)[0]

    def _shrink(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """The input at exactly ``input_scale`` (each side rounded to a pixel, so a 512 px window and a 96 px one
        see the same pixel size), by area: a coarser pixel is the mean of the finer ones it covers, as a coarser
        sensor would see it (at 0.5 PIL's BOX); then padded by reflection to the encoder's stride of 32. Returns it
        and the scaled size, which ``_grow`` crops the logits back to."""
        h, w = x.shape[-2:]
        if self.input_scale == 1.0:
            return x, (h, w)
        inner = (max(1, round(h * self.input_scale)), max(1, round(w * self.input_scale)))
        k = round(1.0 / self.input_scale)
        if inner == (h // k, w // k) and h % k == 0 and w % k == 0:  # whole-number ratio: a plain mean pool
            x = F.avg_pool2d(x, k)
        elif x.device.type == "mps":  # MPS's adaptive pooling refuses sizes that do not divide (pytorch#96056)
            x = F.interpolate(x.cpu(), size=inner, mode="area").to(x.device)
        else:
            x = F.interpolate(x, size=inner, mode="area")
        pad_h, pad_w = -inner[0] % 32, -inner[1] % 32
        if pad_h or pad_w:
            mode = "reflect" if pad_h < inner[0] and pad_w < inner[1] else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return x, inner

    @staticmethod
    def _grow(logits: Tensor, inner: tuple[int, int], size: torch.Size) -> Tensor:
        """Logits of the scaled input, padding cropped off, back at the input's size."""
        if logits.shape[-2:] == size:
            return logits
        logits = logits[..., :inner[0], :inner[1]]
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def build_seg_model(card: dict[str, Any], encoder_weights: str | Path | None = None) -> SegModel:
    """A model as a card describes it; the encoder optionally from a pretraining checkpoint."""
    bands = card_bands(card)
    model = SegModel(card["arch"], card["encoder"], len(card["classes"]), card.get("output_stride", 16),
                     card.get("aux_head", False), card.get("decoder_channels"), in_channels=len(bands),
                     input_scale=card.get("input_scale", 1.0))
    if encoder_weights is not None:
        load_encoder_weights(model.net.encoder, encoder_weights, field="model.init",
                             bands=None if is_rgb(bands) else bands)
    return model


def make_card(*, arch: str, encoder: str, classes: list[dict[str, Any]], ignore_index: int = 255,
              output_stride: int = 16, aux_head: bool = False, decoder_channels: int | None = None,
              bands: Sequence[str] | None = None, band_stretch: list[Any] | None = None,
              file_bands: Sequence[str] | None = None, bands_by_name: bool = False,
              input_scale: float = 1.0, **extra: Any) -> dict[str, Any]:
    """A segmentation card. ``classes`` is a list of {"name": str, "color": [r, g, b]}; ``bands`` the input bands
    (default R, G, B) with their normalisation, and ``band_stretch`` the training data's per-band [lo, hi] that
    inference applies to files of more than 8 bits; ``file_bands`` the training files' band names where their format
    knew them better than the files say (Vaihingen's IRRG), so inference reads such files alike; ``bands_by_name``
    when the training asked for its bands (``data.bands``), R, G, B included: inference then finds them by name and
    stretches them as the training did, instead of the one RGB rule; ``input_scale`` when the model resizes its
    input (``SegModel``): written only when it is not 1, so older cards read as they were."""
    names = list(bands) if bands is not None else list(RGB)
    mean, std = (list(IMAGENET_MEAN), list(IMAGENET_STD)) if is_rgb(names) else band_norm(names)
    return {"kind": "segmentation", "arch": arch, "encoder": encoder, "classes": classes,
            "ignore_index": ignore_index, "output_stride": output_stride, "aux_head": aux_head,
            "decoder_channels": decoder_channels, "bands": names, "band_stretch": band_stretch,
            **({"file_bands": list(file_bands)} if file_bands and not is_rgb(names) else {}),
            **({"bands_by_name": True} if bands_by_name else {}),
            **({"input_scale": float(input_scale)} if input_scale != 1.0 else {}),
            "normalization": {"mean": mean, "std": std}, **extra}


def save_seg_checkpoint(path: Path, model: SegModel, card: dict[str, Any]) -> str:
    return save_checkpoint(Path(path), model=model, card=card)


def check_card(card: Any, path: Path, expect_classes: list[str] | None = None) -> dict[str, Any]:
    """Refuse a checkpoint that is not a segmentation model we can build, or whose classes differ."""
    if not isinstance(card, dict) or card.get("kind") != "segmentation":
        kind = card.get("kind") if isinstance(card, dict) else None
        how = ("; it is a pretrained encoder with no segmentation head: fine-tune it first (python -m core.finetune "
               "... model.init=<it or its run>) and give the fine-tuning run's checkpoints/best.safetensors"
               if kind in ("pretrain", "encoder") else "")
        said = f"its card says kind={kind!r}" if isinstance(card, dict) else "it has no card: not made by the workbench"
        raise CheckpointError(f"{path} is not a segmentation checkpoint ({said}){how}")
    for key in ("arch", "encoder", "classes"):
        if key not in card:
            raise CheckpointError(f"{path}: its card has no {key!r}")
    if card["arch"] not in ARCHITECTURES:
        raise CheckpointError(f"{path}: unknown architecture {card['arch']!r} in its card")
    if card["encoder"] not in ENCODERS:
        raise CheckpointError(f"{path}: unknown encoder {card['encoder']!r} in its card")
    classes = card["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, dict) and "name" in c
                                                                 for c in classes):
        raise CheckpointError(f"{path}: its card's classes are not a list of {{'name', 'color'}} entries")
    if len(classes) > 256:
        raise CheckpointError(f"{path}: {len(classes)} classes do not fit an 8-bit mask")
    scale = card.get("input_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 < scale <= 1.0:
        raise CheckpointError(f"{path}: its card's input_scale {scale!r} is not a number in (0, 1]")
    _check_size(card, path)
    if expect_classes is not None:
        names = [c["name"] for c in card["classes"]]
        if names != list(expect_classes):
            raise CheckpointError(f"{path}: its classes {names} do not match the expected {list(expect_classes)}")
    return card


MAX_PARAMETERS = 200_000_000  # 16x our largest model (DeepLabV3+ on ResNet-50): room for any real one
MAX_CARD_BANDS = 64


def _check_size(card: dict[str, Any], path: Path) -> None:
    """The model a card describes, sized before a byte of it is allocated: built on PyTorch's meta device (shapes
    only). A card with ``decoder_channels`` 2e6 or 200,000 bands was refused only after 3-5 GB."""
    bands = card.get("bands")
    if isinstance(bands, list) and len(bands) > MAX_CARD_BANDS:
        raise CheckpointError(f"{path}: its card asks for {len(bands):,} input bands; at most {MAX_CARD_BANDS}")
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in build_seg_model(card).parameters())
    except Exception as err:  # noqa: BLE001 - any value smp cannot build from is a bad card
        raise CheckpointError(f"{path}: its card does not describe a model that can be built "
                              f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    if params > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: its card describes a model of {params:,} weights (decoder_channels "
                              f"{card.get('decoder_channels')}, {len(card_bands(card))} bands); at most "
                              f"{MAX_PARAMETERS:,} are loaded")


def load_seg_model(path: str | Path, expect_classes: list[str] | None = None,
                   device: str | torch.device = "cpu") -> tuple[SegModel, dict[str, Any]]:
    """Load a segmentation checkpoint after checking its card; the model comes back in eval mode."""
    path = Path(path)
    if path.is_dir():  # a run folder: its model, or why it has none (its encoder was offered, then refused: a review)
        model_file = next((f for f in (path / "checkpoints" / "best.safetensors", path / "best.safetensors")
                           if f.is_file()), None)
        pretrained = (path / "checkpoints" / "encoder.safetensors").is_file()
        raise CheckpointError(f"{path} is a folder, not a checkpoint file" + (
            f"; give {model_file}" if model_file else "; it is a pretraining run: its encoder is no segmentation model, "
            f"fine-tune it first (python -m core.finetune --config ... model.init={path})" if pretrained else ""))
    meta = read_metadata(path)
    card = check_card(meta.get("card"), path, expect_classes)
    with torch.device("meta"):  # no random weights made only to be overwritten (0.2 s for a ResNet-18 model)
        model = build_seg_model(card)
    load_checkpoint(path, model=model, map_location="cpu")
    return model.to(device).eval(), card
