"""``--checkpoint auto``: the segmentation model whose training domain fits an image best.

Why: a visitor uploads a farmland satellite scene and the default (a Dubai city model) calls it water. Every
candidate (the shipped models and the user's fine-tuning runs, from ``core.store.catalog``) is scored on the image
against its card's fingerprint (``core.seg.domain``), at the pixel size it would run at (``core.seg.resample``). The
choice: the highest in-domain score, ties (typically several models at 0) broken by the lower distance relative
to each model's own training tiles. Models without a fingerprint are scored as unknown and chosen only when no
candidate has one. Only candidates that could still win run their encoder: the colour half of a score bounds the
whole, and twins (equal fingerprints) share one scoring; the fit winner is the one full scoring would pick
(``tests/test_domain.py``). Models trained on the same data as the fit winner (the same classes, bands, platform,
pixel size and held-out scenes: a user's fine-tuning runs of a shipped recipe) then compete on their mIoU on those
scenes instead, a shipped one winning ties: their fingerprints differ only by noise (a pick the colour bound had
skipped is scored then: the report's score and warning are always the picked model's own). The choice, its score and
the others' scores go into the image's report.

Never a synthetic answer to a real photo: a model trained on generated scenes (``domain.training_data_kind``) is a
candidate only for an image that says it was generated (our sample tiles carry a PNG text chunk); a real image that
fits no model goes to the closest model trained on real imagery, and the warning names that model's training data.
The colour bound skips a candidate only when another model of its domain (the same data, else the same
fingerprint) was scored, so a domain's only model is always scored. Scores of other domains within ``NEAR_TIE`` of
the winner's are reported as a near tie.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..store.catalog import ModelEntry, segmentation_models
from ..imaging.bands import BandError, card_bands, is_rgb
from ..imaging.model_bands import model_pixels
from ..store.checkpoint import CheckpointError
from .domain import (IMAGE_REASONS, ColourFit, DomainScore, card_fingerprint, colour_fit, score_image,
                     training_data_kind, training_data_text)
from .resample import model_pixel_size, resample_factor, resample_mask, resample_rgb
from .model_twins import best_tested_twin, better_shipped_note, same_data  # noqa: F401 (re-exported)
from .segmodel import load_seg_model


class ModelCache:
    """The last few loaded models by path, so scoring several images against the same candidates loads each once."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._models: OrderedDict[tuple[str, str], tuple[torch.nn.Module, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()  # servers segment several requests at once; each model is loaded once

    @staticmethod
    def _key(path: Path, device: torch.device | str) -> tuple[str, str]:
        return str(Path(path).resolve()), str(device)

    def put(self, path: Path, device: torch.device | str, model: torch.nn.Module, card: dict[str, Any]) -> None:
        """Keep a model loaded elsewhere (e.g. checked by the caller first)."""
        with self._lock:
            self._models[self._key(path, device)] = (model, card)

    def load(self, path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
        key = self._key(path, device)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model, card = load_seg_model(path, device=device)
            self._models[key] = (model, card)
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return model, card


@dataclass
class Choice:
    """The model to use for one image and why."""

    entry: ModelEntry
    domain: DomainScore
    how: str  # "auto" or "given"
    why: str
    table: list[dict[str, Any]] = field(default_factory=list)
    near_tie: list[tuple[str, float | None]] = field(default_factory=list)  # other domains' models scoring about the same

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.entry.label, "path": str(self.entry.path), "how": self.how, "why": self.why,
                "training_data": training_data_text(self.entry.card),
                "near_tie": [{"name": n, "score": None if s is None else round(float(s), 4)} for n, s in self.near_tie],
                "candidates": self.table}


def _at_model_size(rgb: np.ndarray, nodata: np.ndarray, pixel_size_m: float | None, card: dict[str, Any],
                   resample: bool) -> tuple[np.ndarray, np.ndarray]:
    """The image and its no-data mask at the pixel size the model would segment it at."""
    factor = resample_factor(pixel_size_m, model_pixel_size(card)) if resample else None
    if factor is None:
        return rgb, nodata
    small = resample_rgb(rgb, factor)
    return small, resample_mask(nodata, small.shape[:2])


def score_for_model(rgb: np.ndarray, nodata: np.ndarray, pixel_size_m: float | None, model: torch.nn.Module,
                    card: dict[str, Any], device: torch.device | str = "cpu", resample: bool = True) -> DomainScore:
    """The image's domain score against one model, at the pixel size that model would segment it at."""
    rgb, nodata = _at_model_size(rgb, nodata, pixel_size_m, card, resample)
    return score_image(model, card, rgb, ~nodata, device)


SHOW_OTHERS = 3  # the reason names the next few candidates; the report's table holds them all


def _rank_key(item: tuple[int, DomainScore]) -> tuple[float, float, float, int]:
    order, d = item
    if not d.usable:
        return (2.0, 0.0, 0.0, order)
    if not d.known:
        return (1.0, 0.0, 0.0, order)
    return (0.0, -(d.score or 0.0), d.fit if d.fit is not None else float("inf"), order)


def _cannot_win(colour: ColourFit, best: DomainScore | None) -> bool:
    """Whether a candidate's colour bounds alone put it behind the best score so far (exact: never prunes a model
    that could rank first)."""
    if best is None or not best.known or best.score is None or best.fit is None:
        return False
    return colour.share < best.score or (colour.share <= best.score and colour.half_fit > best.fit)


_DOMAIN_KEYS: dict[int, tuple[dict[str, Any], Any, str]] = {}  # id(fingerprint) -> (it, pixel size, key)


def _domain_key(card: dict[str, Any], fp: dict[str, Any]) -> str:
    """Equal for candidates that would score every image alike: the same fingerprint (the same encoder on the same
    tiles, e.g. a shipped model and the run it came from) at the same pixel size. Kept per fingerprint object, so a
    server's requests do not serialise every card again (~1 ms each)."""
    gsd = model_pixel_size(card)
    known = _DOMAIN_KEYS.get(id(fp))
    if known is not None and known[0] is fp and known[1] == gsd:
        return known[2]
    text = json.dumps([fp, gsd], sort_keys=True)
    key = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    if len(_DOMAIN_KEYS) > 256:
        _DOMAIN_KEYS.clear()
    _DOMAIN_KEYS[id(fp)] = (fp, gsd, key)
    return key


@dataclass
class _AsLoaded:
    """An RGB array in the place of a ``LoadedImage`` (R, G, B only)."""
    rgb: np.ndarray
    bands: None = None
    band_names: None = None
    raw_bands: None = None
    name: str = "the image"


NO_FINGERPRINT = "no domain fingerprint in its card"
NEAR_TIE = 0.05  # in-domain scores (shares of training tiles) this close are a near tie: said so, decided by fit


def image_is_generated(image: Any) -> bool:
    """Whether an image says it is a generated scene (``LoadedImage.generated``, from our PNG text chunk). Anything
    else, a bare array included, is taken as a photo of the ground: the safe side."""
    return bool(getattr(image, "generated", None))


def _group(card: dict[str, Any], domain_key: str) -> tuple[Any, ...]:
    """Candidates of one domain: the same data (``same_data``), else the same fingerprint. Why: the colour bound may
    skip a candidate only when another of its domain was scored, so no domain loses its only model to a bound."""
    key = same_data(card)
    return ("data", key) if key is not None else ("fingerprint", domain_key)


def choose_model(image: Any, nodata: np.ndarray, pixel_size_m: float | None,
                 entries: list[ModelEntry] | None = None, cache: ModelCache | None = None,
                 device: torch.device | str = "cpu", resample: bool = True,
                 generated: bool | None = None) -> Choice:
    """Score the candidates on the image and pick the best fit (see the module docstring). A model trained on
    generated scenes is a candidate only for a generated image (``generated``: default from the image itself); a
    real photo goes to the closest model trained on real imagery, with a warning when it fits none. Why not run
    every candidate's encoder: that cost grows with the user's runs. Candidates are taken in order of their colour
    bounds; one whose colour alone cannot beat the best so far is skipped when another model of its domain was
    scored, and one whose fingerprint equals a scored one's reuses its score. ``image``: a ``LoadedImage`` (each
    candidate reads its own bands; one whose bands the image lacks cannot be chosen) or an RGB array."""
    entries = segmentation_models() if entries is None else entries
    if not entries:
        raise FileNotFoundError("no segmentation model to choose from (none shipped in checkpoints/, no fine-tuning run)")
    generated = image_is_generated(image) if generated is None else generated
    synthetic = set() if generated else {k for k, e in enumerate(entries) if training_data_kind(e.card) == "generated"}
    if len(synthetic) == len(entries):
        raise CheckpointError("no model trained on real imagery to choose from (only models trained on generated "
                              "scenes: " + ", ".join(e.label for e in entries[:3]) + "); pick one by name to run "
                              "it on this image anyway")
    cache = cache or ModelCache()
    scored: dict[int, DomainScore] = {}
    pending: list[tuple[int, ColourFit, np.ndarray, np.ndarray, str]] = []
    for k, e in enumerate(entries):
        if k in synthetic:
            continue
        try:  # first: a model that cannot read the image's bands is never chosen, fingerprint or not
            pixels = model_pixels(image, e.card) if not isinstance(image, np.ndarray) else \
                image if is_rgb(card_bands(e.card)) else model_pixels(_AsLoaded(image), e.card)
        except BandError as err:
            scored[k] = DomainScore(known=False, reasons=[f"cannot read this image: {err}"], usable=False)
            continue
        fp = card_fingerprint(e.card)
        if fp is None:
            scored[k] = DomainScore(known=False, reasons=[NO_FINGERPRINT])
            continue
        rgb_k, nodata_k = _at_model_size(pixels, nodata, pixel_size_m, e.card, resample)
        colour = colour_fit(e.card, rgb_k, ~nodata_k)
        if isinstance(colour, DomainScore):
            scored[k] = colour
        else:
            pending.append((k, colour, rgb_k, nodata_k, _domain_key(e.card, fp)))
    pending.sort(key=lambda p: (-p[1].share, p[1].half_fit, p[0]))
    by_domain: dict[str, DomainScore] = {}
    groups = {k: _group(entries[k].card, key) for k, _, _, _, key in pending}
    scored_groups: set[tuple[Any, ...]] = set()
    skipped: dict[int, ColourFit] = {}
    broken: set[int] = set()  # candidates whose file did not load: never switched to
    best: DomainScore | None = None
    for k, colour, rgb_k, nodata_k, key in pending:
        if key in by_domain:
            scored[k] = by_domain[key]
            continue
        if groups[k] in scored_groups and _cannot_win(colour, best):
            skipped[k] = colour
            continue
        try:
            model, card = cache.load(entries[k].path, device)
        except Exception as err:  # noqa: BLE001 - one unusable candidate must not stop the others
            scored[k] = DomainScore(known=False, reasons=[f"cannot be loaded ({type(err).__name__})"])
            broken.add(k)
            continue
        scored[k] = by_domain[key] = score_image(model, card, rgb_k, ~nodata_k, device, colour)
        scored_groups.add(groups[k])
        if best is None or _rank_key((0, scored[k])) < _rank_key((0, best)):
            best = scored[k]
    ranked = sorted(scored.items(), key=_rank_key)
    best_k, best = ranked[0]
    if not best.usable:
        raise BandError("no model reads this image's bands: " + best.reasons[0].removeprefix("cannot read this image: "))
    inputs = {k: (colour, rgb_k, nodata_k) for k, colour, rgb_k, nodata_k, _ in pending}
    while True:
        pick, twins = best_tested_twin(best_k, entries,
                                       broken | synthetic | {k for k, d in scored.items() if not d.usable})
        if pick not in skipped:
            break
        # the pick's colours kept it from being scored (a twin fitted better): score it now, so that the report's
        # score and warning are its own, never the twin's (its full score is below the cap, so the winner stands)
        colour, rgb_k, nodata_k = inputs[pick]
        del skipped[pick]
        try:
            model, card = cache.load(entries[pick].path, device)
        except Exception as err:  # noqa: BLE001 - then the next best twin
            scored[pick] = DomainScore(known=False, reasons=[f"cannot be loaded ({type(err).__name__})"])
            broken.add(pick)
            continue
        scored[pick] = score_image(model, card, rgb_k, ~nodata_k, device, colour)
    ranked = sorted(scored.items(), key=_rank_key)
    table = [{"name": entries[k].label, "score": d.as_dict()["score"], "relative_distance": _round_fit(d),
              "in_domain": d.in_domain, "known": d.known} for k, d in ranked]
    table += [{"name": entries[k].label, "score": None, "relative_distance": None, "in_domain": None, "known": True,
               "skipped": f"not run: its colours alone cap its score at {c.share:.2f}, below another model of "
                          "its data"}
              for k, c in sorted(skipped.items(), key=lambda kc: (-kc[1].share, kc[1].half_fit))]
    table += [{"name": entries[k].label, "score": None, "relative_distance": None, "in_domain": None, "known": True,
               "skipped": "trained on generated scenes: never chosen for a real image"} for k in sorted(synthetic)]
    near = _near_ties(best_k, ranked, entries, groups)
    domain = best
    if best.known:
        tied = {entries[k].label for k, _ in near}  # said in the tie's own words
        others = [f"{t['name']} {t['score']:.2f}" for t in table[1:]  # the winner and the pick are said apart
                  if t["known"] and t["score"] is not None and t["name"] != entries[pick].label
                  and t["name"] not in tied]
        listed = ", ".join(others[:SHOW_OTHERS]) + (f" and {len(others) - SHOW_OTHERS} more" if
                                                    len(others) > SHOW_OTHERS else "")
        fits = "best domain fit" if best.in_domain is not False else "no domain fits this image, the closest"
        real = " trained on real imagery" if synthetic else ""
        why = (f"{fits} of {len(entries) - len(synthetic)} model(s){real}: domain fit {best.score:.2f}"
               + (f" ({entries[best_k].label}, trained on the same data as this one)" if pick != best_k else ""))
        if pick != best_k:
            miou = entries[pick].test_miou()
            why += (f"; of the {twins} models with that training data and test scenes, this is the best on those "
                    "scenes" + (f" (mIoU {100 * miou:.1f} %)" if miou is not None else
                                " (a shipped one; the others have no score)"))
            own = scored.get(pick)
            if own is not None and own.known and own.score is not None:  # its own encoder's view: score, warning
                domain = own
                why += f", its own domain fit {own.score:.2f}"
        why += ((f"; {_tie_text(best, near, entries)}" if near else "")
                + (f" (the others' domain fit: {listed})" if others else "")
                + (f"; {len(skipped)} ruled out by colour alone" if skipped else "")
                + (f"; {len(synthetic)} trained on generated scenes left out" if synthetic else "")
                + (shipped_note := better_shipped_note(pick, entries,
                                                       broken | {k for k, d in scored.items() if not d.usable})))
    else:
        why, shipped_note = _unknown_why(scored, entries), ""
    if entries[pick].label.startswith("run: ") and entries[pick].test is None and not shipped_note:  # else said there
        why += "; this run has no test score (stopped, or not tested): how well it segments is not measured"
    domain = replace(domain, reasons=list(domain.reasons), trained_on=training_data_text(entries[pick].card))
    return Choice(entries[pick], domain, "auto", why, table,
                  near_tie=[(entries[k].label, d.score) for k, d in near])


FIRST = "the first model in the list of candidates"  # what decides when no fit can (the list names it first)


def _unknown_why(scored: dict[int, DomainScore], entries: Sequence[Any]) -> str:
    """Why no domain fit decided: no fingerprint anywhere, or the image itself (too small, too little imagery),
    each reason with the models it holds for (a 0.1 m image is too small for a 0.5 m model only)."""
    about_image: dict[str, list[str]] = {}
    for k, d in sorted(scored.items()):
        if d.reasons and d.reasons[0].startswith(IMAGE_REASONS):
            about_image.setdefault(d.reasons[0], []).append(entries[k].label)
    if not about_image:
        return f"no candidate has a domain fingerprint: {FIRST}"
    said = [f"{reason} (for {', '.join(labels)})" if len(about_image) > 1 else reason
            for reason, labels in about_image.items()]
    return f"no domain fit could be measured because {'; and '.join(said)}; {FIRST}"


def _near_ties(best_k: int, ranked: list[tuple[int, DomainScore]], entries: list[ModelEntry],
               groups: dict[int, tuple[Any, ...]]) -> list[tuple[int, DomainScore]]:
    """The candidates of other domains whose score is within ``NEAR_TIE`` of the winner's (and above 0, unless equal to
    it): the choice between them rests on noise, and the user should know (two models at 0.02 each is no choice)."""
    best = dict(ranked)[best_k]
    if not best.known or best.score is None:
        return []
    mine = groups.get(best_k)
    return [(k, d) for k, d in ranked if k != best_k and d.known and d.usable and d.score is not None
            and (mine is None or groups.get(k) != mine) and abs(best.score - d.score) <= NEAR_TIE
            and (d.score > 0 or d.score == best.score)]  # 0: farther than all its training tiles, no rival


def _fits(best: DomainScore, other: DomainScore) -> str:
    """The two relative distances that broke a tie, under the name the report gives them (``relative_distance``: a
    review looked for the printed figure under ``distance``, the content half's raw distance, and read the key it had
    before, ``fit``, as the page's "domain fit", which is ``score``)."""
    return f"relative distance, the report's relative_distance: {best.fit:.2f} vs {other.fit:.2f}"


def _round_fit(d: DomainScore) -> float | None:
    return d.as_dict()["relative_distance"]


def _tie_text(best: DomainScore, near: list[tuple[int, DomainScore]], entries: list[ModelEntry]) -> str:
    k, d = near[0]
    more = f" and {len(near) - 1} more" if len(near) > 1 else ""
    if best.score == d.score == 0 and best.fit is not None and d.fit is not None and best.fit != d.fit:  # both fit
        # none: no near tie of two fits, only the nearer training tiles
        return (f"{entries[k].label}{more} fits it no better (domain fit 0 too): the nearer training tiles decided "
                f"({_fits(best, d)})")
    if best.score == d.score and best.fit is not None and d.fit is not None and best.fit != d.fit:
        how = f", decided by the nearer training tiles ({_fits(best, d)})"
    elif best.score == d.score:
        how = ", equal in score and fit: the first listed was taken"
    else:
        how = f": the scores are within {NEAR_TIE:.2f}, too close to tell the domains apart"
    return f"a near tie with {entries[k].label} ({best.score:.3f} vs {d.score:.3f}{more}){how}"


def given_model(path: Path, card: dict[str, Any]) -> ModelEntry:
    """A model named by the user (``--checkpoint PATH``), as a catalog entry."""
    return ModelEntry(f"file: {Path(path).name}", Path(path), card)
