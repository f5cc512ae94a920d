"""Models trained on the same data: which of them answers for an image, and when a shipped one would have been better.

Why apart from ``model_choice``: the domain fit ranks domains; between the models of one domain (a user's runs of a
shipped recipe, the shipped model) fingerprints differ only by noise, so their own test scores decide instead.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..imaging.bands import card_bands
from ..store.catalog import ModelEntry


def same_data(card: dict[str, Any]) -> tuple[Any, ...] | None:
    """What makes two models' domains one: the classes, the bands, the platform, the pixel size and the held-out
    scenes (so also the split); None when the card names no test scenes."""
    domain = card.get("domain") or {}
    tests = domain.get("test_scenes")
    if not tests or not isinstance(tests, list):
        return None
    classes = tuple(str(c.get("name")) for c in card.get("classes") or [] if isinstance(c, dict))
    return (classes, tuple(card_bands(card) or ()), str(domain.get("platform")), str(domain.get("gsd_m")),
            tuple(map(str, tests)))


def best_tested_twin(k: int, entries: list[ModelEntry], unusable: Collection[int] = ()) -> tuple[int, int]:
    """Among the candidates trained on the same data as ``entries[k]`` (``same_data``), the one with the highest
    mIoU on their shared test scenes; a shipped model on ties and over models with no such figure. Why: their
    fingerprints come from the same training tiles, so their domain scores differ by noise, and a fit decided by
    noise would send a scene's images to a different experiment each (often a worse one than the shipped). Without
    figures and without a shipped twin, ``k`` (the fit winner) stays. ``unusable``: candidates that cannot run this
    image (a file that did not load, bands it lacks). Returns the pick and how many such twins there are."""
    key = same_data(entries[k].card)
    if key is None:
        return k, 1
    twins = [j for j, e in enumerate(entries) if j == k or (j not in unusable and same_data(e.card) == key)]

    def quality(j: int) -> tuple[float, int, int, int]:
        miou = entries[j].test_miou()
        return (-miou if miou is not None else 1.0, 0 if entries[j].shipped else 1, 0 if j == k else 1, j)

    return min(twins, key=quality), len(twins)


def better_shipped_note(pick: int, entries: list[ModelEntry], unusable: Collection[int] = ()) -> str:
    """A run picked by fit over a shipped model of the same classes, bands and platform that scores higher on its
    own test scenes (the review: a 20-step experiment took every later image): said, with how to use the shipped,
    unless that one cannot run this image (``unusable``: its file did not load, or it lacks the image's bands)."""
    key, own = same_data(entries[pick].card), entries[pick].test_miou()
    if entries[pick].shipped or key is None:
        return ""
    for j, e in enumerate(entries):
        if j in unusable:
            continue
        miou = e.test_miou()
        if e.shipped and miou is not None and (same_data(e.card) or ())[:4] == key[:4] and miou > (own or 0.0):
            name = e.label.removeprefix("shipped: ")
            return (f"; note: {e.label} scores {100 * miou:.1f} % on its test scenes, this run "
                    + (f"{100 * own:.1f} % on its own" if own is not None else
                       "has no score on unseen test scenes" if entries[pick].test else "has no test score")
                    + f" (other scenes, so no ranking): --checkpoint {name} runs it")
    return ""
