"""Score one segmentation against a label mask the user brings (the Segment page's "score against labels", the
Gradio demo's, and ``python -m core.segment --labels``).

Why here and not in the page: reading a label mask has rules a user must be able to rely on everywhere, and they are
the data loaders' (``core.data.mask_read``): a mask is read by what it shows, the class indices of the model (a
greyscale or 16-bit PNG/TIFF: value k is class k) or the class colours of the model's card (an RGB image as data
sets publish them: Potsdam, DeepGlobe, the Dubai set); a palette PNG through its palette when its colours are the
classes' (in any palette order), else as indices. The ignore value, colours that are no class's and the image's
no-data are left out of the scores, and the answer says how much was left out.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..data.mask_read import MaskError, card_table, decode_image, lossy_hint, near_class, palette_arrays
from ..imaging.imageio import _open_pil, image_header
from ..store.catalog import shipped_class_sets
from .infer import NODATA
from .metrics import SegScores, confusion_matrix, scores_from_confusion

IGNORE = 255
RIGHT, WRONG = (46, 160, 67), (220, 38, 38)  # the difference overlay: green where right, red where wrong


class LabelMaskError(ValueError):
    """The label mask cannot be scored against this image (unreadable, another size, no class in it)."""


@dataclass
class LabelScore:
    scores: SegScores
    labels: np.ndarray  # class indices, IGNORE where left out
    how: str  # "class indices", "class colours", "class colours (palette)", ... (``core.data.mask_read``)
    left_out: float  # share of the image's pixels not scored (ignore value, unknown colours, no data)
    unknown: float  # share of pixels whose value or colour is no class's
    hint: str = ""  # what the unknown pixels may be (a colour a few levels off a class's, a 1-based index mask)

    def iou_rows(self, classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per class: IoU (None where the class is in neither the labels nor the prediction) and its pixels."""
        cm = np.asarray(self.scores.confusion)
        return [{"class": str(c.get("name", k)), "iou": None if cm[k, :].sum() + cm[:, k].sum() == 0
                 else float(self.scores.iou[k]), "label pixels": int(cm[k, :].sum())}
                for k, c in enumerate(classes)]

    def predicted_not_labeled(self, classes: list[dict[str, Any]]) -> list[tuple[str, int]]:
        """Classes the model predicted that no pixel of the mask holds, with their predicted pixels: each counts as
        IoU 0 in the mIoU (the data-set convention), which on one image can cost many points for a few pixels."""
        cm = np.asarray(self.scores.confusion)
        return [(str(c.get("name", k)), int(cm[:, k].sum())) for k, c in enumerate(classes)
                if cm[k, :].sum() == 0 and cm[:, k].sum() > 0]

    def miou_of_mask_classes(self) -> float:
        """The mean IoU over the classes the mask holds only (what a per-image score is often read as)."""
        present = torch.from_numpy(np.asarray(self.scores.confusion).sum(axis=1) > 0)
        return float(torch.tensor(self.scores.iou)[present].mean())  # as the mIoU is taken: equal when all are held

    def mask_classes_words(self) -> str:
        """Beside a headline mIoU where the model predicted classes the mask lacks (each an IoU of 0, which on one
        image can halve the figure): " (31.2 % over the 3 classes the mask holds)"; "" otherwise."""
        cm = np.asarray(self.scores.confusion)
        held = cm.sum(axis=1) > 0
        if not (~held & (cm.sum(axis=0) > 0)).any():
            return ""
        n = int(held.sum())
        return f" ({100 * self.miou_of_mask_classes():.1f} % over the {n} class{'' if n == 1 else 'es'} the mask holds)"

    def absent_note(self, classes: list[dict[str, Any]], name: Callable[[str], str] = str) -> str | None:
        """One sentence on the classes predicted but absent from the mask, or None when there are none; ``name``
        writes a class's name as the interface does (a page: "forest land" for ``forest_land``)."""
        absent = self.predicted_not_labeled(classes)
        if not absent:
            return None
        names = ", ".join(f"{name(n)} ({p:,} px)" for n, p in absent)
        held = int((np.asarray(self.scores.confusion).sum(axis=1) > 0).sum())
        return (f"predicted but in no pixel of the mask: {names}; on one image each counts as an IoU of 0 however "
                "few its pixels (over a data set they would join that class's totals, where it does occur). Over the "
                f"{held} class{'' if held == 1 else 'es'} the mask holds, the mean IoU is "
                f"{100 * self.miou_of_mask_classes():.1f} %.")

    def report(self, classes: list[dict[str, Any]], labels: str = "", scene: str | None = None) -> dict[str, Any]:
        """What a segmentation report's ``label_score`` holds: mIoU, pixel accuracy, IoU per class name (None where
        the class is in neither), how the mask was read, the shares left out, and the mIoU over the mask's own
        classes with the predicted pixels of the classes it lacks; ``scene``: whether the score is unseen
        (``scene_role.unseen_check``)."""
        return {"labels": labels, "scene_check": scene,
                "miou": float(self.scores.miou), "accuracy": float(self.scores.overall_accuracy),
                "iou": {r["class"]: r["iou"] for r in self.iou_rows(classes)}, "read_as": self.how,
                "left_out": round(self.left_out, 6), "unknown": round(self.unknown, 6),
                "unknown_note": self.unknown_note(),
                "miou_of_mask_classes": self.miou_of_mask_classes(),
                "predicted_not_in_mask": {n: p for n, p in self.predicted_not_labeled(classes)}}

    def unknown_note(self) -> str | None:
        """The share of the mask's pixels of no class, and what they may be; None below 0.1 % (the CLI, the page
        and the Gradio demo all say it in these words)."""
        if self.unknown <= 0.001:
            return None
        return f"{100 * self.unknown:.1f} % of the mask's pixels are no class of this model{self.hint}"

    def left_out_text(self) -> str:
        """The share left out as the interfaces print it: "< 0.1 %" for a few pixels, which "0.0 %" said were none
        (a review: 1,152 pixels of a DeepGlobe scene)."""
        return "< 0.1 %" if 0 < self.left_out < 0.0005 else f"{100 * self.left_out:.1f} %"

    def line(self) -> str:
        """The scores in one line, as the command line prints them."""
        foreign = self.unknown_note()
        return (f"mIoU {100 * self.scores.miou:.1f} %{self.mask_classes_words()}, accuracy "
                f"{100 * self.scores.overall_accuracy:.1f} % (read as "
                f"{self.how}; {self.left_out_text()} left out{'; ' + foreign if foreign else ''})")


FOREIGN_SHARE = 0.5  # more of a mask's pixels of no class than this: refused, not scored on the rest
NEAR_SHARE = 0.01  # at least this share in a colour a few levels off a class's: refused (its class would be missed)


ClassSets = Sequence[tuple[str, list[dict[str, Any]]]]
NOT_AN_IMAGE = ("the label mask is not an image (unknown or unsupported format); give a PNG or TIFF of class "
                "indices or class colours")


def foreign_palette(img: Image.Image, classes: list[dict[str, Any]], known: ClassSets) -> str | None:
    """Why a palette mask read as indices is another class set's colour-coded mask, or None. A palette PNG may hold
    class indices drawn in any colours (the Segment page's own download) or class colours in any order (the Dubai
    masks): when most of its pixels wear the class colours of another set the workbench knows, its indices mean
    nothing for this model (a Dubai mask scored 14 % against the DeepGlobe model by chance agreement of indices)."""
    indices, pal = palette_arrays(img)
    counts = np.bincount(indices.ravel(), minlength=256)[:256]
    used: dict[tuple[int, ...], int] = {}
    for i in np.flatnonzero(counts):  # entries sharing a colour count together
        used[tuple(map(int, pal[i]))] = used.get(tuple(map(int, pal[i])), 0) + int(counts[i])
    own = {tuple(c.get("color") or ()) for c in classes}
    for name, other in known:
        colours = {tuple(c.get("color") or ()) for c in other} - {()}
        if not colours or colours == own:
            continue
        hits = [c for c in used if c in colours]
        if len(hits) >= min(2, len(colours)) and sum(used[c] for c in hits) >= FOREIGN_SHARE * indices.size:
            share = 100 * sum(used[c] for c in hits) / indices.size
            return (f"the label mask's palette holds the class colours of {name} ({_names(other)}) on {share:.0f} % of "
                    f"its pixels: it is a mask of those classes, not of this model's ({_names(classes)}); score it "
                    f"with a model of those classes")
    return None


def read_label_mask(data: bytes, classes: list[dict[str, Any]], shape: tuple[int, int],
                    ignore_index: int = IGNORE, rule: Any = None,
                    known: ClassSets | None = None) -> tuple[np.ndarray, str, float, str]:
    """(class indices with IGNORE where left out, how it was read, share of pixels of no class, what those may be:
    ``LabelScore.hint``). ``rule``: the model
    card's ``label_masks`` (its training masks' unlabeled colours and colour rule); ``known``: (name, classes) of the
    class sets a palette mask read as indices must not be drawn in (default: the shipped models')."""
    try:
        img = _open_pil(io.BytesIO(data))  # PIL's bomb check lifted: the size is checked here, from the header
        if (img.height, img.width) != tuple(shape):  # before decoding: a 144 MP mask of the wrong size cost 560 MB
            raise _other_size(img.size, (shape[1], shape[0]))
        img.load()
    except UnidentifiedImageError:
        raise LabelMaskError(NOT_AN_IMAGE) from None
    except OSError as err:  # a truncated or damaged file: PIL's reason names no object of ours
        raise LabelMaskError(f"the label mask cannot be read ({err})") from None
    try:
        decoded = decode_image(img, card_table(classes, ignore_index, rule))
    except MaskError as err:
        raise LabelMaskError(f"{err} (the model's classes: {_names(classes)})") from None
    if decoded.how == "class indices (palette)":
        why = foreign_palette(img, classes, shipped_class_sets() if known is None else known)
        if why:
            raise LabelMaskError(why)
    labels = np.where(decoded.labels < len(classes), decoded.labels, IGNORE).astype(np.uint8)
    colours, names = [tuple(c.get("color", ())) for c in classes], [str(c.get("name")) for c in classes]
    if decoded.unknown > FOREIGN_SHARE * labels.size:  # most of it is no class: another data set's mask, most likely
        lossy = lossy_hint(decoded.example, colours, names)
        raise LabelMaskError(f"{100 * decoded.unknown / labels.size:.0f} % of the label mask's pixels are of no class of "
                             f"this model as {decoded.how} (e.g. {decoded.example})"
                             f"{lossy + '.' if lossy else ': is it a mask of another data set?'} The model's classes: {_names(classes)}")
    missed = _missed_class(decoded, labels, colours, names)
    if missed:
        raise LabelMaskError(missed)
    near = lossy_hint(decoded.example, colours, names) if decoded.unknown else ""
    if not (labels != IGNORE).any():
        raise LabelMaskError(f"no pixel of the label mask is one of the model's classes ({_names(classes)}) as "
                             f"{decoded.how}; give class indices 0-{len(classes) - 1} or the class colours of the "
                             "legend")
    return labels, decoded.how, decoded.unknown / labels.size, near or _index_hint(decoded.example, len(classes))


def _missed_class(decoded: Any, labels: np.ndarray, colours: list[tuple], names: list[str]) -> str | None:
    """Why the mask is refused when a class is mostly drawn in a colour a few levels off its own (on 1 % of the
    pixels or more): scored, that class would read as absent from the mask (a mask with building one level off was
    scored with building "in no pixel of the mask"). Soft edges a level or two off a class that is there in its own
    colour are scored, their share said."""
    near: dict[int, list] = {}
    for colour, count in decoded.unknowns:
        hit = near_class(colour, colours)
        if hit is not None:
            near.setdefault(hit[0], []).append((colour, count))
    exact = np.bincount(labels[labels != IGNORE], minlength=len(colours))
    for k, found in sorted(near.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        off = sum(c for _, c in found)
        if off >= NEAR_SHARE * labels.size and off > exact[k]:
            own = 100 * exact[k] / labels.size
            return (f"{100 * off / labels.size:.1f} % of the label mask's pixels are of no class of this model as "
                    f"{decoded.how}{lossy_hint(found[0][0], colours, names)}, against {own:.1f} % in {names[k]}'s "
                    f"own colour. Scored as they are, those pixels would be left out and "
                    f"{names[k]} counted as {'absent from' if not exact[k] else 'rare in'} the mask")
    return None


def _index_hint(example: Any, n: int) -> str:
    """When the unknown value is one past the last class index: a mask that counts classes from 1 (0 unlabeled,
    as LoveDA's) reads as garbage, and one whose value n means unlabeled reads right; only the user knows which."""
    if not isinstance(example, int) or example != n:
        return ""
    return (f" (value {n}, one past the last class index {n - 1}: right if {n} means unlabeled; if the mask counts "
            f"the classes from 1, with 0 unlabeled, subtract 1 from it first)")


def _other_size(mask_wh: tuple[int, int], image_wh: tuple[int, int]) -> LabelMaskError:
    """A size refusal; a mask of the image's size turned a quarter is most likely drawn on the photo as stored, before
    its EXIF orientation turned it for reading (a review's phone-style JPEG): said, so the user knows what to do."""
    turned = (" (the image's sides swapped: if its EXIF orientation turned it on reading, turn the mask the same "
              "way)") if tuple(mask_wh) == tuple(image_wh)[::-1] else ""
    return LabelMaskError(f"the label mask is {mask_wh[0]}×{mask_wh[1]} pixels, the image {image_wh[0]}×{image_wh[1]}: "
                          f"they must be the same size{turned}")


def check_label_mask_size(mask: str | Path, image: str | Path | None) -> None:
    """Before segmenting, from the two headers: a mask of another size than the image, a missing mask or a file that
    is no image is refused at once (the Gradio demo segmented a 2448 px scene for 33 s before refusing its half-size
    mask; core.segment a scene for a minute before saying its mask was a text file). Either orientation passes here,
    as a photo's EXIF turn is applied on reading; another unreadable file is left to the full read, which says why."""
    head = image_header(image) if image else None
    try:
        with _open_pil(Path(mask)) as img:
            size = (int(img.width), int(img.height))
    except UnidentifiedImageError:
        raise LabelMaskError(NOT_AN_IMAGE) from None
    except FileNotFoundError as err:
        raise LabelMaskError(f"the label mask cannot be read ({err.strerror or err})") from None
    except OSError:
        return
    if head is not None and size not in ((head.width, head.height), (head.height, head.width)):
        raise _other_size(size, (head.width, head.height))


def _names(classes: list[dict[str, Any]]) -> str:
    return ", ".join(str(c.get("name")) for c in classes)


def score_labels(pred: np.ndarray, data: bytes, classes: list[dict[str, Any]],
                 ignore_index: int = IGNORE, rule: Any = None) -> LabelScore:
    """Scores of a predicted mask (class indices, NODATA where the image has none) against a label mask file."""
    labels, how, unknown, hint = read_label_mask(data, classes, pred.shape, ignore_index, rule)
    labels = np.where(pred == NODATA, IGNORE, labels).astype(np.uint8)
    scored = labels != IGNORE
    if not scored.any():
        raise LabelMaskError("every labeled pixel lies in the image's no-data: nothing to score")
    n = len(classes)
    cm = confusion_matrix(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(labels.astype(np.int64)), n,
                          IGNORE)
    return LabelScore(scores_from_confusion(cm), labels, how, float(1 - scored.mean()), unknown, hint)


def score_label_file(pred: np.ndarray, path: str | Path, classes: list[dict[str, Any]],
                     ignore_index: int = IGNORE, rule: Any = None) -> LabelScore:
    """:func:`score_labels` of a mask file on disk (``python -m core.segment --labels``)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise LabelMaskError(f"the label mask cannot be read ({err.strerror or err})") from None
    return score_labels(pred, data, classes, ignore_index, rule)


def difference_image(rgb: np.ndarray, pred: np.ndarray, labels: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """The image with right pixels tinted green and wrong ones red; pixels left out stay as they are."""
    out = rgb.astype(np.float32).copy()
    scored = labels != IGNORE
    for colour, where in ((RIGHT, scored & (pred == labels)), (WRONG, scored & (pred != labels))):
        out[where] = (1 - opacity) * out[where] + opacity * np.asarray(colour, np.float32)
    return out.round().clip(0, 255).astype(np.uint8)
