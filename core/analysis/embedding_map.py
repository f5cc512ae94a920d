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


@dataclass(frozen=True)
class ClusterQuality:
    """How well the features separate the tiles: kNN accuracy on dominant classes where labels exist, else the
    silhouette of k-means clusters (both always computed when possible)."""

    knn_accuracy: float | None  # leave-one-out, k nearest by cosine, majority vote
    majority_rate: float | None  # accuracy of always answering the most common class: the kNN's chance level
    silhouette: float | None  # of the k-means clusters, cosine, on features
    k: int
    queries: int | None = None  # the tiles with a class that the kNN accuracy is over (None: cached before it)
    knn_right: list[int] | None = None  # per tile of the map: 1 right, 0 wrong, -1 no class (paired comparisons)

    def headline(self) -> tuple[str, float | None, str]:
        """(name, value, help) of the one number to show for a checkpoint."""
        if self.knn_accuracy is not None:
            return (f"{self.k}-NN accuracy", self.knn_accuracy,
                    (f"leave-one-out {self.k}-NN on the dominant class (cosine); always guessing the most common "
                     f"class scores {self.majority_rate:.3f}. Not the Pretrain page's live kNN monitor, which "
                     "classifies some scenes' tiles by their 20 nearest tiles of other scenes"))
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
    n = len(labels)
    k = min(k, neighbours.shape[1] - 1)
    if n < 2 or k < 1:
        return None
    voters = labels[neighbours[:, 1:k + 1]]  # (n, k)
    n_classes = int(labels.max()) + 1
    weights = 1.0 + (k - np.arange(k)) / (k * k + 1.0)
    votes = np.zeros((n, n_classes))
    np.add.at(votes, (np.repeat(np.arange(n), k), voters.ravel()), np.tile(weights, n))
    return votes.argmax(axis=1) == labels


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
                    clusters: np.ndarray, k: int = 5) -> ClusterQuality:
    """kNN accuracy (with its chance level) where labels exist, and the k-means silhouette. Tiles without a class
    (``NO_CLASS`` -1: no labeled pixel) neither ask nor vote: the neighbours are found again among the others (they
    had made the majority rate fail and counted as queries whose -1 votes went to the last class)."""
    acc = rate = queries = answers = None
    if dominant is not None:
        dominant = np.asarray(dominant, np.int64)
        labeled = dominant >= 0
        queries = int(labeled.sum())
        if queries:
            graph = neighbours if labeled.all() else knn_graph(features[labeled], k + 1)[0]
            right = knn_right(graph, dominant[labeled], k)
            acc, rate = (float(right.mean()) if right is not None else float("nan")), majority_rate(dominant)
            if right is not None:
                full = np.full(len(dominant), -1, np.int64)
                full[labeled] = right
                answers = full.tolist()
    return ClusterQuality(knn_accuracy=acc, majority_rate=rate, silhouette=silhouette(features, clusters), k=k,
                          queries=queries, knn_right=answers)
