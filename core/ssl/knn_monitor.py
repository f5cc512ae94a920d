"""Online kNN accuracy during pretraining (as solo-learn's online kNN): every ``train.knn_every`` steps, the
encoder's pooled features of a few hundred labeled tiles, each query tile classified by its nearest bank tiles.

Why: a contrastive loss going down says little about whether the features separate land-cover classes; this curve
does, live, at the cost of one forward pass over the monitor's tiles. Labels are the tiles' dominant classes
(``core.data.dominant``) and are read only here, never by the loss.

Query and bank tiles come from different scenes where the data set has several (a neighbour from the same scene
would often be the same field seen twice), else from a seeded random split; both are fixed for the whole run, so
the curve compares the encoder with itself over time. The choice uses its own seeded generator: turning the
monitor on changes no training step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dominant import dominant_classes
from ..data.seg_subset import place_ids
from ..data.protocols import TileSet

BANK_TILES = 512
QUERY_TILES = 256
NEIGHBOURS = 20
TEMPERATURE = 0.07  # the neighbours' votes weigh exp(cos / 0.07), as in InstDisc and solo-learn


class MonitorUnavailable(ValueError):
    """The data cannot feed the monitor (no labels, too few labeled tiles): the run goes on without it."""


@dataclass
class KnnSplit:
    bank: np.ndarray  # tile indices
    queries: np.ndarray
    by_scene: bool
    covered: float = 1.0  # share of the query tiles whose class the bank holds: the most kNN can reach


def knn_split(labels: np.ndarray, scene_ids: np.ndarray | None, seed: int, bank_tiles: int = BANK_TILES,
              query_tiles: int = QUERY_TILES) -> KnnSplit:
    """Bank and query tiles among the labeled ones: whole scenes for the queries (about a fifth of the tiles)
    where there are at least 2 scenes, else a random fifth; each side capped by a seeded sample."""
    rng = np.random.default_rng(seed + 7919)
    usable = np.flatnonzero(labels >= 0)  # fn_scoring.NO_CLASS (-1): a tile without a labeled pixel
    if len(usable) < 4:
        raise MonitorUnavailable(f"the data set has {len(usable)} labeled tile(s); it needs at least 4")
    scenes = np.asarray(scene_ids)[usable] if scene_ids is not None else None
    by_scene = scenes is not None and len(np.unique(scenes)) >= 2
    if by_scene:
        is_query = _held_scenes(rng.permutation(np.unique(scenes)), scenes, len(usable))
        others = np.random.default_rng(seed + 104729)  # further choices draw apart: the sample below is unchanged
        for _ in range(SCENE_TRIES):
            if _covered(labels[usable], is_query) == 1.0:
                break
            alternative = _held_scenes(others.permutation(np.unique(scenes)), scenes, len(usable))
            if _covered(labels[usable], alternative) > _covered(labels[usable], is_query):
                is_query = alternative
    else:
        is_query = np.zeros(len(usable), bool)
        is_query[rng.permutation(len(usable))[:max(1, len(usable) // 5)]] = True
    bank, queries = usable[~is_query], usable[is_query]
    bank = np.sort(rng.choice(bank, min(bank_tiles, len(bank)), replace=False))
    queries = np.sort(rng.choice(queries, min(query_tiles, len(queries)), replace=False))
    return KnnSplit(bank, queries, by_scene, float(np.isin(labels[queries], labels[bank]).mean()))


SCENE_TRIES = 64  # other choices of query scenes tried when the first leaves query classes out of the bank


def _held_scenes(order: np.ndarray, scenes: np.ndarray, usable: int) -> np.ndarray:
    """Whole scenes in ``order`` until they hold a fifth of the tiles (at least one scene stays in the bank)."""
    held: list = []
    for scene in order[:-1]:
        held.append(scene)
        if np.isin(scenes, held).sum() >= usable / 5:
            break
    return np.isin(scenes, held)


def _covered(labels: np.ndarray, is_query: np.ndarray) -> float:
    """Share of the query tiles whose class some bank tile has. Why: on DeepGlobe the first choice held out the
    urban scenes, the bank had no urban tile, and half the queries could never be right (kNN read 3 %)."""
    return float(np.isin(labels[is_query], labels[~is_query]).mean()) if is_query.any() else 1.0


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int, n_classes: int,
                temperature: float = TEMPERATURE) -> torch.Tensor:
    """Classes of L2-normalised ``queries`` (q, D) by a weighted vote of their ``k`` most similar ``bank`` rows."""
    sims = queries @ bank.T
    k = min(k, bank.shape[0])
    top, idx = sims.topk(k, dim=1)
    votes = torch.zeros(queries.shape[0], n_classes, dtype=sims.dtype, device=sims.device)
    votes.scatter_add_(1, bank_labels[idx], (top / temperature).exp())
    return votes.argmax(dim=1)


class KnnMonitor:
    """Fixed bank and query tiles of a labeled pretraining set; ``measure(encoder)`` gives the record fields."""

    def __init__(self, dataset: TileSet, every: int, input_size: int, seed: int, device: torch.device):
        labels = dominant_classes(dataset)
        if labels is None:
            raise MonitorUnavailable("the data set has no labels (a folder without a class table)")
        self.dataset, self.every, self.input_size, self.device = dataset, every, input_size, device
        self.split = knn_split(labels, place_ids(dataset), seed)
        self.bank_labels = torch.as_tensor(labels[self.split.bank], dtype=torch.long, device=device)
        self.query_labels = torch.as_tensor(labels[self.split.queries], dtype=torch.long, device=device)
        self.n_classes = int(labels.max()) + 1
        # the best any constant answer scores on the queries (their most common class): the bar the features must
        # beat. (The bank's most common class was the bar until the review: on DeepGlobe it is water, which no query
        # holds, so the bar read 0 % where always answering "agriculture" scores 50 %.)
        common = torch.bincount(self.query_labels, minlength=self.n_classes).argmax()
        self.baseline = float((self.query_labels == common).float().mean())
        bank_common = torch.bincount(self.bank_labels, minlength=self.n_classes).argmax()
        self.bank_baseline = float((self.query_labels == bank_common).float().mean())  # runs' records until then

    def starts(self, step: int, total_steps: int) -> bool:
        """Whether to measure before the first step: the untrained encoder is the curve's own reference (a review
        had 15-20 % and no way to tell it from what training gave), in a run that reaches a measured step."""
        return step == 0 and 0 < self.every <= total_steps

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def _features(self, encoder: nn.Module, indices: np.ndarray) -> torch.Tensor:
        from ..analysis.embeddings import encoder_features

        feats = encoder_features(encoder, self.dataset, indices, input_size=self.input_size, device=self.device)
        return F.normalize(torch.as_tensor(feats, device=self.device), dim=1)

    def measure(self, encoder: nn.Module) -> dict[str, float]:
        """kNN accuracy now, its majority-class baseline, the number of query tiles and the seconds it took; the
        encoder's train/eval mode is left as it was."""
        t0 = time.perf_counter()
        was_training = encoder.training
        try:
            bank = self._features(encoder, self.split.bank)
            queries = self._features(encoder, self.split.queries)
        finally:
            encoder.train(was_training)
        pred = knn_predict(bank, self.bank_labels, queries, NEIGHBOURS, self.n_classes)
        acc = float((pred == self.query_labels).float().mean())
        return {"knn_acc": acc, "knn_baseline": self.baseline, "knn_queries": int(len(self.split.queries)),
                "knn_s": time.perf_counter() - t0}  # the number of queries: a difference's interval needs it

    def tiles_changed(self, records: list, step: int) -> str | None:
        """What to log when these tiles are not the ones the run measured before (a run resumed across a change of
        the rule that picks them): its curve would jump at this step with no word. None when they agree."""
        earlier = [m["knn_baseline"] for m in records if isinstance(m, dict) and "knn_baseline" in m]
        if not earlier or abs(earlier[-1] - self.baseline) <= 1e-9:
            return None
        if abs(earlier[-1] - getattr(self, "bank_baseline", -1.0)) <= 1e-9:  # the same tiles, the bar redefined
            return (f"kNN monitor: its baseline is now the query tiles' most common class ({self.baseline:.3f}; it "
                    f"was the bank's, {earlier[-1]:.3f}): the dashed line steps at step {step}, the tiles and the "
                    "accuracy are as before")
        return (f"kNN monitor: its bank and query tiles differ from those of the run's steps so far (a newer rule "
                f"chose them; baseline {earlier[-1]:.3f} before, {self.baseline:.3f} now): its curve may jump at step "
                f"{step}")

    @classmethod
    def for_run(cls, dataset: TileSet, every: int, input_size: int, seed: int,
                device: torch.device) -> tuple["KnnMonitor | None", str]:
        """The monitor of a run, or None when it is off or the data cannot feed it; and the line for the run's log
        (a preset's monitor on an unlabeled folder is switched off, not an error)."""
        if not every:
            return None, ""
        try:
            monitor = cls(dataset, every, input_size, seed, device)
        except MonitorUnavailable as err:
            return None, f"kNN monitor off: {err}"
        return monitor, monitor.describe()

    def describe(self) -> str:
        how = "query tiles from other scenes than the bank's" if self.split.by_scene else "a random split"
        reach = (f"; only {100 * self.split.covered:.0f} % of the query tiles are of a class the bank holds, the "
                 "most kNN can reach" if self.split.covered < 1 else "")
        return (f"kNN monitor every {self.every} steps: {len(self.split.queries)} query tiles against a bank of "
                f"{len(self.split.bank)} ({how}), k={NEIGHBOURS}, majority-class baseline {self.baseline:.3f} (always "
                f"answering the query tiles' most common class){reach}")

