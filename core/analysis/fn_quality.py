"""Are a run's false-negative flags real? Their precision beside reference selectors on the very same batches.

Why: precision against the base rate of a random pair flatters. On aerial imagery a trivial selector (the tile
whose colour statistics are closest) already finds same-class tiles far more often than chance, and adjacent
tiles of one scene share their class almost always. So every figure here is measured on the batches the run
actually trained on (rebuilt by :class:`~core.ssl.batch_order.BatchOrder`), for the same anchors and as many
picks as the run's detector made (FALSE's FNSD, ``nearest``, ``support`` or the ``oracle``: every detector writes
its flags to ``fns.jsonl`` alike), and split into same-scene and cross-scene pairs. The unit is counted once per
step, whatever the views (:mod:`core.analysis.fn_units`): per-anchor selection counts picks, an anchor tile's
flagged negative tile (a reference selector picks as many for the same anchor tile); global selection counts tile
pairs of the batch (MoCo: query -> queue tile). The loss's rows repeat a unit up to four times, and counting them
made every interval too narrow. For the same reason a precision's interval counts the distinct tile pairs, weighed
by how often each came (:mod:`core.analysis.proportions`): whether two tiles share a class is one fact however many
steps flagged (or picked) them.

- ``flags``: the units the detector flagged.
- ``random``: a uniformly random negative of the same anchors (global mode: a random pair of the batch); its
  expected precision, computed exactly, not sampled.
- ``colour``: the nearest negatives by per-channel colour mean and standard deviation of the whole tile.
- ``encoder``: the nearest negatives by cosine of the run's final encoder features (pooled, unaugmented tile).
- ``oracle``: a selector that knows the labels: the share of picks that could have been same-class at all
  (per anchor: as many as the batch held same-class negatives). The ceiling of any selector for these anchors.
  (The ``oracle`` *detector* trains with these labels: its own flags are same-class by construction.)

Cross-scene figures: for the flags, those between tiles of different scenes; for every reference selector, the
same picks made among the negatives of other scenes only (neighbouring and overlapping edge tiles of one scene
share their class almost always, so a selector unrestricted would mostly pick those).

A tile pair is correct when both tiles share their dominant class; pairs with a tile that has no labeled pixel are
left out. Recall is the flagged same-class tile pairs over all same-class pairs that the batches offered, over every
step. Intervals are 95 % Wilson score intervals; ``random`` and ``oracle`` have none: they are expectations for these
anchors, computed exactly, so the flags are read against them as fixed values (a Wilson interval around them too
widened a comparison, and 70 % [48, 85] of flags was called level with random's exact 45 %). Nothing here reads
files: :mod:`core.analysis.fn_report` does.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .fn_scoring import NO_CLASS
from .fn_units import StepCandidates, tile_pair_units
from .proportions import (EXPECTED, Proportion, Tally, entry_ci, entry_text, recall_text,  # noqa: F401 (re-exported)
                          _num)

SELECTORS = ("flags", "random", "colour", "encoder", "oracle")  # "flags": the run's own detector's
# ------------------------------------------------------------------------------------------------ report
@dataclass
class FlagQuality:
    """Everything :func:`score_flags` measured; ``to_json`` gives the report's keys."""

    selection: str
    selectors: dict[str, Proportion]
    cross_scene: dict[str, Proportion]
    calibrated: Proportion
    same_scene: Proportion
    recall: Proportion
    base_rate: float
    pairs_flagged: int
    pairs_scored: int
    excluded_unlabeled: int
    excluded_mirrored: int
    steps_with_flags: int
    steps_rebuilt: int
    tiles: int
    tiles_without_class: int
    notes: list[str] = field(default_factory=list)
    pairs_treated: int = 0  # records the treatment acted on (FNCC: its gate opened), labeled or not
    units_flagged: int = 0  # distinct units per step the flags amount to, labeled or not
    unit: str = "pick"  # "pick" (an anchor tile's negative tile) or "tile pair" (global selection)

    @property
    def precision(self) -> Proportion:
        return self.selectors["flags"]

    def to_json(self) -> dict[str, Any]:
        p = self.precision
        return {
            "precision": _num(p.value), "precision_ci": [_num(x) for x in p.ci], "pairs": p.total,
            "base_rate": _num(self.base_rate),
            "selectors": {k: v.to_json() for k, v in self.selectors.items()},
            "recall": _num(self.recall.value), "recall_detail": self.recall.to_json(),
            "cross_scene_precision": _num(self.cross_scene["flags"].value),
            "cross_scene": {k: v.to_json() for k, v in self.cross_scene.items()},
            "same_scene": self.same_scene.to_json(), "calibrated": self.calibrated.to_json(),
            "selection": self.selection, "pairs_flagged": self.pairs_flagged, "pairs_scored": self.pairs_scored,
            "excluded_unlabeled": self.excluded_unlabeled, "excluded_mirrored": self.excluded_mirrored,
            "steps_with_flags": self.steps_with_flags, "steps_rebuilt": self.steps_rebuilt, "tiles": self.tiles,
            "tiles_without_class": self.tiles_without_class, "notes": list(self.notes),
            "pairs_treated": self.pairs_treated, "units_flagged": self.units_flagged, "unit": self.unit,
        }


def _nearest(features: np.ndarray, metric: str, anchor: int, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k candidates closest to ``anchor`` (ties: the lower tile index)."""
    if metric == "cosine":
        d = -(features[candidates] @ features[anchor])
    else:
        d = ((features[candidates] - features[anchor]) ** 2).sum(axis=1)
    order = np.lexsort((candidates, d))
    return candidates[order[:k]]


def _closest_pairs(features: np.ndarray, metric: str, anchors: np.ndarray, candidates: np.ndarray, k: int,
                   ordered: bool, scenes: np.ndarray | None = None) -> list[tuple[int, int]]:
    """The k closest (anchor, candidate) tile pairs of a batch, distinct tiles, each unordered pair once; with
    ``scenes``, pairs of tiles from different scenes only."""
    fa, fc = features[anchors], features[candidates]
    if metric == "cosine":
        d = -(fa @ fc.T)
    else:
        d = ((fa[:, None, :] - fc[None, :, :]) ** 2).sum(axis=2)
    a_idx, c_idx = np.meshgrid(np.arange(len(anchors)), np.arange(len(candidates)), indexing="ij")
    ok = anchors[a_idx] != candidates[c_idx]
    if scenes is not None:
        ok &= scenes[anchors[a_idx]] != scenes[candidates[c_idx]]
    if not ordered:
        ok &= anchors[a_idx] < candidates[c_idx]
    flat = np.flatnonzero(ok.ravel())
    order = flat[np.lexsort((flat, d.ravel()[flat]))][:k]
    return [(int(anchors[a_idx.ravel()[i]]), int(candidates[c_idx.ravel()[i]])) for i in order]


class _Scorer:
    """Scores pairs of tiles by class and scene."""

    def __init__(self, classes: np.ndarray, scenes: np.ndarray) -> None:
        self.classes, self.scenes = classes, scenes

    def labeled(self, a: int, c: int) -> bool:
        return self.classes[a] != NO_CLASS and self.classes[c] != NO_CLASS

    def add_pairs(self, tally: Tally, pairs: Iterable[tuple[int, int]], part: str = "both") -> None:
        """Score picks: ``both`` counts every pair overall and its cross-scene ones apart (the run's own flags);
        ``overall`` or ``cross`` count them in one tally only (a selector's unrestricted and cross-scene picks)."""
        for a, c in pairs:
            if a == c or not self.labeled(a, c):  # a tile is not its own negative
                continue
            tally.add_pick(a, c, float(self.classes[a] == self.classes[c]), part,
                           bool(self.scenes[a] != self.scenes[c]))

    def chance(self, a: int, candidates: np.ndarray) -> tuple[float, float, int, int] | None:
        """For one random labeled negative of ``a``: the expected hit overall and among other scenes' negatives
        (NaN when there are none), and how many same-class negatives there are, overall and in other scenes (what
        the oracle can find). None when ``a`` has no class or no labeled negative."""
        if self.classes[a] == NO_CLASS:
            return None
        cand = candidates[(candidates != a) & (self.classes[candidates] != NO_CLASS)]
        if len(cand) == 0:
            return None
        same = self.classes[cand] == self.classes[a]
        cross = self.scenes[cand] != self.scenes[a]
        x_rate = float(same[cross].mean()) if cross.any() else float("nan")
        return float(same.mean()), x_rate, int(same.sum()), int((same & cross).sum())


def score_flags(pairs: pd.DataFrame, steps: Iterable[StepCandidates], classes: np.ndarray, scenes: np.ndarray,
                features: dict[str, tuple[np.ndarray, str]], selection: str, base_rate: float,
                flagged_by: str = "FNSD") -> FlagQuality:
    """Precision of the flags and of the reference selectors on the same batches; recall over every step.

    Every precision counts distinct units per step (:func:`~core.analysis.fn_units.tile_pair_units`): picks of an
    anchor tile (per-anchor selection; MoCo's query -> queue tile) or tile pairs (global selection), not the loss's
    rows, which repeat them for each view.

    Args:
        pairs: flagged pairs (``core.analysis.fn_scoring.load_pairs``); steps: every step's candidates, in order;
        classes: dominant class per tile (``NO_CLASS`` for none); scenes: scene id per tile;
        features: selector name -> (per-tile features, "cosine" or "euclidean"), e.g. ``colour`` and ``encoder``;
        selection: how the detector picked: ``global`` (FNSD's default: pairs per batch) or ``per_anchor`` (FNSD's
        per-anchor top-k, and every other detector: its own picks per anchor);
        flagged_by: the detector's name in the notes ("FNSD", "nearest").

    Raises ValueError when a flagged tile is not in its step's rebuilt batch: the data set or the batch rule
    is not the run's, and no figure would mean anything.
    """
    classes = np.asarray(classes, np.int64)
    scenes = np.asarray(scenes, np.int64)
    scorer = _Scorer(classes, scenes)
    mirrored = pairs["mirrored"].to_numpy(bool) if len(pairs) else np.zeros(0, bool)
    own = pairs[~mirrored]
    by_step = {int(s): g for s, g in own.groupby("step")} if len(own) else {}
    tallies = {name: Tally(name in EXPECTED) for name in ["flags", "random", *features, "oracle"]}
    calibrated, same_scene = Tally(), Tally()
    available = flagged_same = n_rebuilt = unlabeled = n_units = 0
    ordered = selection != "global"
    for sc in steps:
        n_rebuilt += 1
        available += _same_class_pairs(sc, classes)
        group = by_step.get(sc.step)
        if group is None:
            continue
        anchors_t = group["anchor_index"].to_numpy(np.int64)
        cands_t = group["candidate_index"].to_numpy(np.int64)
        _check_in_batch(sc, anchors_t, cands_t)
        ordered = selection != "global" or sc.ordered
        unit = tile_pair_units(group, ordered)
        n_units += len(unit)
        flagged = list(zip(unit["anchor_index"].tolist(), unit["candidate_index"].tolist()))
        scored = [(a, c) for a, c in flagged if scorer.labeled(a, c)]
        unlabeled += len(flagged) - len(scored)
        scorer.add_pairs(tallies["flags"], scored)
        scorer.add_pairs(calibrated, [p for p, cal in zip(flagged, unit["calibrated"].to_numpy(bool)) if cal])
        for a, c in scored:
            if scenes[a] == scenes[c]:
                same_scene.add_pick(a, c, float(classes[a] == classes[c]), "overall")
        flagged_same += len({_key(a, c, sc.ordered) for a, c in zip(anchors_t.tolist(), cands_t.tolist())
                             if a != c and scorer.labeled(a, c) and classes[a] == classes[c]})
        if selection == "global":
            _global_selectors(sc, len(scored), scorer, tallies, features)
        else:
            _anchor_selectors(sc, Counter(a for a, _ in scored), scorer, tallies, features)
    recall = Proportion(float(flagged_same), int(available))
    selectors = {k: t.overall() for k, t in tallies.items()}
    cross = {k: t.cross() for k, t in tallies.items()}
    notes = []
    if selection == "global":
        made = ("pairs of the batch's tiles" if _unit_word(ordered) == "pair" else
                "picks (an anchor tile's choice of a negative among the batch's)")  # not "as many picks of the batch"
        notes.append(f"global selection: each reference selector makes, per step, as many {made} as {flagged_by} "
                     "flagged (the closest ones); random makes them at random")
    else:
        notes.append(f"per-anchor selection: each reference selector picks, for each anchor tile, as many negative "
                     f"tiles as {flagged_by} flagged for it; a pair flagged from both sides is two picks, as it is "
                     "for every selector")
    return FlagQuality(
        selection=selection, selectors=selectors, cross_scene=cross, calibrated=calibrated.overall(),
        same_scene=same_scene.overall(), recall=recall, base_rate=base_rate, pairs_flagged=len(pairs),
        pairs_scored=selectors["flags"].total, excluded_unlabeled=int(unlabeled), excluded_mirrored=int(mirrored.sum()),
        steps_with_flags=len(by_step), steps_rebuilt=n_rebuilt, tiles=len(classes),
        tiles_without_class=int((classes == NO_CLASS).sum()), notes=notes,
        pairs_treated=int(pairs["calibrated"].astype(bool).sum()) if "calibrated" in pairs else 0,
        units_flagged=n_units, unit=_unit_word(ordered))


def _unit_word(ordered: bool) -> str:
    """What a report counts: an anchor tile's pick of a negative tile, or a pair of tiles (global selection)."""
    return "pick" if ordered else "tile pair"


def _key(a: int, c: int, ordered: bool) -> tuple[int, int]:
    return (a, c) if ordered or a < c else (c, a)


def _check_in_batch(sc: StepCandidates, anchors: np.ndarray, cands: np.ndarray) -> None:
    bad_a = ~np.isin(anchors, sc.anchors)
    bad_c = ~np.isin(cands, sc.candidates)
    if bad_a.any() or bad_c.any():
        tile = int(anchors[bad_a][0]) if bad_a.any() else int(cands[bad_c][0])
        raise ValueError(f"step {sc.step}: flagged tile {tile} is not in the rebuilt batch; the data set or the run's "
                         "settings (seed, batch size, ranks) differ from those it trained with")


def _same_class_pairs(sc: StepCandidates, classes: np.ndarray) -> int:
    """Same-class pairs of distinct labeled tiles the step offered (unordered for SimCLR, anchor -> queue for MoCo)."""
    ca = classes[sc.anchors]
    ca = ca[ca != NO_CLASS]
    if not sc.ordered:
        n = np.bincount(ca) if len(ca) else np.zeros(0, np.int64)
        return int((n * (n - 1) // 2).sum())
    cc = classes[sc.candidates]
    cc = cc[cc != NO_CLASS]
    size = int(max(ca.max(initial=-1), cc.max(initial=-1))) + 1
    if size <= 0:
        return 0
    na, nc = np.bincount(ca, minlength=size), np.bincount(cc, minlength=size)
    both = np.isin(sc.anchors, sc.candidates) & (classes[sc.anchors] != NO_CLASS)  # a tile is not its own negative
    return int((na * nc).sum() - both.sum())


def _anchor_selectors(sc: StepCandidates, picks: Counter, scorer: _Scorer, tallies: dict[str, Tally],
                      features: dict[str, tuple[np.ndarray, str]]) -> None:
    """For each anchor tile as many picks as the detector's scored flags of it (``picks``), by every reference
    selector: among all its negatives, and (for the cross-scene figures) among the negatives from other scenes
    only. Random and the oracle: their expected hits for these anchors and numbers of picks."""
    for a, k in picks.items():
        negatives = sc.candidates[sc.candidates != a]
        other = negatives[scorer.scenes[negatives] != scorer.scenes[a]]
        for name, (feats, metric) in features.items():
            scorer.add_pairs(tallies[name], [(a, int(c)) for c in _nearest(feats, metric, a, negatives, k)], "overall")
            if len(other):
                scorer.add_pairs(tallies[name], [(a, int(c)) for c in _nearest(feats, metric, a, other, k)], "cross")
        chance = scorer.chance(a, sc.candidates)
        if chance is None:
            continue
        rate, x_rate, n_same, x_same = chance
        x_k = k if x_rate == x_rate else 0  # NaN: no negative from another scene
        tallies["random"].add(k * rate, k, x_k * x_rate if x_k else 0.0, x_k)
        tallies["oracle"].add(min(k, n_same), k, min(x_k, x_same), x_k)


def _global_selectors(sc: StepCandidates, k: int, scorer: _Scorer, tallies: dict[str, Tally],
                      features: dict[str, tuple[np.ndarray, str]]) -> None:
    """The k pairs of the batch every reference selector picks (MoCo: query -> queue tile): among all pairs, and
    among cross-scene pairs."""
    for name, (feats, metric) in features.items():
        for part, scenes in (("overall", None), ("cross", scorer.scenes)):
            scorer.add_pairs(tallies[name], _closest_pairs(feats, metric, sc.anchors, sc.candidates, k, sc.ordered,
                                                           scenes), part)
    a, c = np.meshgrid(sc.anchors, sc.candidates, indexing="ij")
    ok = (a != c) & (scorer.classes[a] != NO_CLASS) & (scorer.classes[c] != NO_CLASS)
    if not sc.ordered:
        ok &= a < c
    if not ok.any():
        return
    same = (scorer.classes[a] == scorer.classes[c])[ok]
    cross = (scorer.scenes[a] != scorer.scenes[c])[ok]
    tallies["random"].add(k * float(same.mean()), k)
    tallies["oracle"].add(float(min(k, int(same.sum()))), k)
    if cross.any():
        tallies["random"].add(0.0, 0, k * float(same[cross].mean()), k)
        tallies["oracle"].add(0.0, 0, float(min(k, int((same & cross).sum()))), k)
