"""From encoder features to what the Embeddings page draws and scores: the exact cosine kNN graph, a 2-D UMAP of
it, and how well the features separate the tiles (kNN accuracy on dominant classes, k-means silhouette).

Why apart from ``core.analysis.embeddings``: these are pure array functions (features in, numbers out); computing
features from a checkpoint, caching and the flagged pairs are ``core.analysis.embeddings``'s.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MIN_TILES = 5


class EmbeddingError(ValueError):
    """A request that cannot be embedded (unreadable checkpoint card, too few tiles); the message says why."""


@dataclass(frozen=True)
class UmapParams:
    """umap-learn settings that change the map (and so the cache key)."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    n_epochs: int = 200
    init: str = "spectral"
    random_state: int = 0


OTHER_PLACES = "of other scenes only"  # a tile's neighbours of its own scene are often the same field again
ANY_TILE = "any other tile"  # one scene (or none known): leave-one-out


@dataclass(frozen=True)
class ClusterQuality:
    """How well the features separate the tiles: kNN accuracy on dominant classes where labels exist, else the
    silhouette of k-means clusters (both always computed when possible)."""

    knn_accuracy: float | None  # k nearest by cosine (of other places: ``neighbours_from``), majority vote
    majority_rate: float | None  # accuracy of always answering the most common class: the kNN's chance level
    silhouette: float | None  # of the k-means clusters, cosine, on features
    k: int
    queries: int | None = None  # the tiles with a class that the kNN accuracy is over (None: cached before it)
    knn_right: list[int] | None = None  # per tile of the map: 1 right, 0 wrong, -1 no class (paired comparisons)
    neighbours_from: str = ANY_TILE  # where the voters come from: OTHER_PLACES where the tiles hold two or more
    colour_accuracy: float | None = None  # the same kNN on the tiles' colour statistics: the reference to beat
    colour_right: list[int] | None = None  # its answers, as ``knn_right`` (the difference's paired interval)

    def headline(self) -> tuple[str, float | None, str]:
        """(name, value, help) of the one number to show for a checkpoint."""
        if self.knn_accuracy is not None:
            colour = ("" if self.colour_accuracy is None else
                      f"; the same vote on the tiles' colour statistics alone scores {self.colour_accuracy:.3f}")
            return (f"{self.k}-NN accuracy", self.knn_accuracy,
                    (f"each tile's dominant class as voted by its {self.k} nearest labeled tiles "
                     f"({self.neighbours_from}, cosine); always guessing the most common class scores {self.majority_rate:.3f}{colour}. Not "
                     "the Pretrain page's live kNN monitor, which classifies some scenes' tiles by their 20 nearest "
                     "tiles of other scenes"))
        return ("silhouette", self.silhouette,
                "silhouette of the k-means clusters (cosine, -1..1; higher is better separated); no labels here")


# ------------------------------------------------------------------------------------------------ neighbours, map
def _unit(features: np.ndarray) -> torch.Tensor:
    return F.normalize(torch.from_numpy(np.ascontiguousarray(features, np.float32)), dim=1)


def knn_graph(features: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by cosine distance (1 - cos), each point itself first at distance 0.

    Row by row in chunks, so memory is chunk x n. Self is forced first even among duplicate points, since
    umap-learn (and the leave-one-out kNN accuracy) expect column 0 to be the point itself.
    """
    z = _unit(features)
    n = z.shape[0]
    k = min(k, n)
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    for start in range(0, n, chunk):
        sim = z[start:start + chunk] @ z.T
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + start] = 2.0  # above any cosine: self first
        top, which = torch.topk(sim, k, dim=1)
        d = (1.0 - top).clamp_min_(0.0)
        d[:, 0] = 0.0
        idx[start:start + chunk], dist[start:start + chunk] = which.numpy(), d.numpy()
    return idx, dist


UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.distances", "umap.spectral", "umap.sparse")
_code_kept: list[bool] = []  # one switch per process: caching must be on before umap's first compilation


def keep_umap_code() -> int:
    """Have numba keep umap-learn's compiled functions on disk, as pynndescent (which umap uses) keeps its own: a
    process's first map then loads them in a fraction of a second instead of compiling them for 12 s of a core (every
    app start, CLI run and test worker did). Numba puts them beside umap's sources, in its user cache where those are
    read-only, or in ``NUMBA_CACHE_DIR``; a function it cannot keep is compiled as before. Returns how many it keeps.
    """
    if _code_kept:
        return 0
    _code_kept.append(True)
    import importlib

    from numba.core.dispatcher import Dispatcher

    kept = 0
    for name in UMAP_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and getattr(obj.py_func, "__module__", "") == name:
                try:
                    obj.enable_caching()
                    kept += 1
                except RuntimeError:  # no cache folder numba can write: compiled in memory, as before
                    pass
    return kept


def umap_2d(features: np.ndarray, params: UmapParams = UmapParams(),
            knn: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """2-D UMAP coordinates (n, 2) float32 from exact cosine neighbours (why: ``core.analysis.embeddings``' notes)."""
    import umap  # imported here: 2-4 s, and the pages must open fast

    keep_umap_code()

    n = len(features)
    if n < MIN_TILES:
        raise EmbeddingError(f"a map needs at least {MIN_TILES} tiles, got {n}")
    k = max(2, min(params.n_neighbors, n - 1))
    idx, dist = knn if knn is not None else knn_graph(features, k)
    reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=params.min_dist, n_epochs=params.n_epochs,
                        init=params.init, random_state=params.random_state, metric="cosine",
                        precomputed_knn=(idx[:, :k].astype(np.int32), dist[:, :k].astype(np.float32), None),
                        force_approximation_algorithm=True, verbose=False)
    with warnings.catch_warnings():  # n_jobs overridden by random_state; no search index for transform()
        warnings.simplefilter("ignore")
        coords = reducer.fit_transform(np.ascontiguousarray(features, np.float32))
    return np.asarray(coords, np.float32)


def warm_up() -> np.ndarray:
    """Compile umap-learn's numba functions once (a tiny map with the same settings), e.g. at app start; returns
    that map (300 points of 4 clusters) so a caller can check it."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 32))
    points = (centres[rng.integers(0, 4, 300)] + 0.5 * rng.normal(size=(300, 32))).astype(np.float32)
    return umap_2d(points)


# ------------------------------------------------------------------------------------------------ quality
def knn_accuracy(neighbours: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out kNN accuracy: each point's label predicted by the majority of its k nearest others.

    ``neighbours`` is (n, >k) with the point itself in column 0 (as :func:`knn_graph` returns); every label a
    class (>= 0: :func:`cluster_quality` leaves the others out). Ties go to the class of the nearer neighbours: each
    vote gets a bonus that falls with rank and sums to less than one vote.
    """
    right = knn_right(neighbours, labels, k)
    return float(right.mean()) if right is not None else float("nan")


def knn_right(neighbours: np.ndarray, labels: np.ndarray, k: int = 5) -> np.ndarray | None:
    """Whether each point's label is its k nearest others' vote (:func:`knn_accuracy`'s answers, one per point)."""
    labels = np.asarray(labels, np.int64)
    k = min(k, neighbours.shape[1] - 1)
    if len(labels) < 2 or k < 1:
        return None
    return _voted(labels, neighbours[:, 1:k + 1], np.ones((len(labels), k), bool))


def _voted(labels: np.ndarray, voters: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Whether each point's label wins its voters' vote, (n,) bool; ``voters`` (n, k) indices nearest first,
    ``valid`` which of them vote. Ties go to the class of the nearer voters: each vote gets a bonus that falls with
    rank and sums to less than one vote."""
    n, k = voters.shape
    weights = (1.0 + (k - np.arange(k)) / (k * k + 1.0))[None, :] * valid
    votes = np.zeros((n, int(labels.max()) + 1))
    np.add.at(votes, (np.repeat(np.arange(n), k), labels[voters].ravel()), weights.ravel())
    return votes.argmax(axis=1) == labels


def knn_right_across(features: np.ndarray, labels: np.ndarray, places: np.ndarray, k: int = 5,
                     metric: str = "cosine", chunk: int = 1024) -> np.ndarray | None:
    """:func:`knn_right` with voters of other places only (``core.data.seg_subset.place_ids``): a tile's
    neighbours in its own scene are often the same field or roof seen again, which a lookup of the scene answers
    without any learned feature. ``metric``: cosine, or euclidean for magnitudes (colour statistics)."""
    labels, places = np.asarray(labels, np.int64), np.asarray(places)
    n = len(labels)
    if n < 2 or k < 1:
        return None
    x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    x = F.normalize(x, dim=1) if metric == "cosine" else x
    own = torch.from_numpy(places)
    k = min(k, n - 1)
    voters, valid = np.empty((n, k), np.int64), np.empty((n, k), bool)
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        near = x[rows] @ x.T if metric == "cosine" else -torch.cdist(x[rows], x)  # larger is nearer
        near[own[rows][:, None] == own[None, :]] = -torch.inf  # itself and its own place
        top, which = torch.topk(near, k, dim=1)
        voters[rows.numpy()], valid[rows.numpy()] = which.numpy(), torch.isfinite(top).numpy()
    return _voted(labels, voters, valid)


def majority_rate(labels: np.ndarray) -> float:
    """Share of the most common label: what a classifier that ignores the features would score (tiles without a
    class, ``NO_CLASS`` -1, left out)."""
    labels = np.asarray(labels, np.int64)
    counts = np.bincount(labels[labels >= 0])
    return float(counts.max() / counts.sum()) if counts.sum() else float("nan")


def kmeans_labels(features: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means clusters of the unit-normalised features (so Euclidean k-means follows cosine), fixed seed."""
    from sklearn.cluster import KMeans

    z = _unit(features).numpy()
    k = max(1, min(k, len(z)))
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(z).astype(np.int64)


def silhouette(features: np.ndarray, labels: np.ndarray, sample: int = 2000, seed: int = 0) -> float | None:
    """Cosine silhouette of a clustering (on a seeded sample of at most ``sample`` points); None if undefined."""
    from sklearn.metrics import silhouette_score

    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= len(labels) - 1:
        return None
    return float(silhouette_score(features, labels, metric="cosine", sample_size=min(sample, len(labels)),
                                  random_state=seed))


def cluster_quality(features: np.ndarray, neighbours: np.ndarray, dominant: np.ndarray | None,
                    clusters: np.ndarray, k: int = 5, places: np.ndarray | None = None,
                    colours: np.ndarray | None = None) -> ClusterQuality:
    """kNN accuracy (with its chance level and, given the tiles' ``colours``, the same vote on them) where labels
    exist, and the k-means silhouette. Voters come from other ``places`` where the labeled tiles hold two or more.
    Tiles without a class (``NO_CLASS`` -1: no labeled pixel) neither ask nor vote: the neighbours are found again
    among the others (they had made the majority rate fail and counted as queries whose -1 votes went to the last
    class)."""
    acc = rate = queries = answers = colour = colour_answers = None
    how = ANY_TILE
    if dominant is not None:
        dominant = np.asarray(dominant, np.int64)
        labeled = dominant >= 0
        queries = int(labeled.sum())
        own = None if places is None else np.asarray(places)[labeled]
        if own is not None and len(np.unique(own)) >= 2:
            how = OTHER_PLACES

        def answers_of(points: np.ndarray, metric: str, graph: np.ndarray | None = None) -> np.ndarray | None:
            if how == OTHER_PLACES:
                return knn_right_across(points[labeled], dominant[labeled], own, k, metric)
            if graph is None:
                graph = knn_graph(points[labeled], k + 1)[0] if metric == "cosine" else _euclidean_graph(
                    points[labeled], k + 1)
            return knn_right(graph, dominant[labeled], k)

        def per_tile(right: np.ndarray) -> list[int]:
            full = np.full(len(dominant), -1, np.int64)
            full[labeled] = right
            return full.tolist()

        if queries:
            right = answers_of(features, "cosine", neighbours if labeled.all() else None)
            acc, rate = (float(right.mean()) if right is not None else float("nan")), majority_rate(dominant)
            answers = per_tile(right) if right is not None else None
            by_colour = answers_of(colours, "euclidean") if colours is not None else None
            if by_colour is not None:
                colour, colour_answers = float(by_colour.mean()), per_tile(by_colour)
    return ClusterQuality(knn_accuracy=acc, majority_rate=rate, silhouette=silhouette(features, clusters), k=k,
                          queries=queries, knn_right=answers, neighbours_from=how, colour_accuracy=colour,
                          colour_right=colour_answers)


def _euclidean_graph(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's k nearest by Euclidean distance, itself first (as :func:`knn_graph`)."""
    x = torch.from_numpy(np.ascontiguousarray(points, np.float32))
    near = -torch.cdist(x, x)
    near.fill_diagonal_(torch.inf)
    return torch.topk(near, min(k, len(x)), dim=1)[1].numpy()
