"""Embeddings: features, exact neighbours, the disk cache, cluster quality and flagged pairs as segments."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.analysis import embedding_map as M
from core.analysis import embeddings as E
from core.store.checkpoint import export_encoder
from core.config import DataConfig
from core.data import IMAGENET_MEAN, IMAGENET_STD, SyntheticAerial, data_root
from core.ssl.models import build_encoder, pooled_features
from core.store.runs import list_runs

TINY = DataConfig(name="synthetic", num_tiles=40, tile_size=32, seed=0, pretrain_splits=["train", "val", "test"])


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data root: the tiny synthetic set and the embeddings cache go there."""
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random resnet18 exported the way pretraining exports encoders (``encoder.`` keys, card beside)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "encoder.safetensors"
    export_encoder(path, build_encoder("resnet18"), {"kind": "encoder", "encoder": "resnet18", "image_size": 32})
    return path


def blobs(n_per: int = 30, classes: int = 3, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated directions plus noise: a toy set where features do know the class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 5
    labels = np.repeat(np.arange(classes), n_per)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


# ------------------------------------------------------------------------------------------------ features
def test_features_shape_progress_and_equal_to_a_direct_forward(data_dir: Path, checkpoint: Path) -> None:
    ds = SyntheticAerial(num_tiles=12, tile_size=32, progress=False)
    encoder = E.load_encoder(checkpoint)
    seen: list[tuple[int, int]] = []
    feats = E.encoder_features(encoder, ds, [3, 0, 7, 11, 5], input_size=32, batch_size=2, precision="fp32",
                               progress=lambda done, total: seen.append((done, total)))
    assert feats.shape == (5, 512) and feats.dtype == np.float32
    assert seen == [(2, 5), (4, 5), (5, 5)]
    x = ds.get_images([3, 0, 7, 11, 5]).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        direct = pooled_features(encoder, x).numpy()
    np.testing.assert_allclose(feats, direct, rtol=1e-4, atol=1e-5)
    resized = E.encoder_features(encoder, ds, [0, 1], input_size=48, precision="fp32")
    assert resized.shape == (2, 512) and not np.allclose(resized, feats[[1]].repeat(2, 0))


def test_bad_checkpoints_say_why(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not found"):
        E.load_encoder(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(Exception, match="junk.safetensors"):
        E.load_encoder(junk)


# ------------------------------------------------------------------------------------------------ neighbours, quality
def test_umaps_compiled_code_is_kept_on_disk() -> None:
    """Every process's first map used to compile umap-learn's numba code (12 s of a core); with it kept on disk, a
    process after the first loads it. Checked on the switch itself: each of umap's own jitted functions has a disk
    cache, whatever this process drew before (a map drawn in a second process: 0.2 s against 5-12 s, measured)."""
    import umap.layouts
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    M.keep_umap_code()
    own = [f for f in vars(umap.layouts).values()
           if isinstance(f, Dispatcher) and f.py_func.__module__ == "umap.layouts"]
    assert own and not [f for f in own if isinstance(f._cache, NullCache)]
    assert M.keep_umap_code() == 0  # once per process


def test_knn_graph_is_exact_and_puts_self_first() -> None:
    x, _ = blobs()
    x[5] = x[4]  # a duplicate: self must still come first
    idx, dist = M.knn_graph(x, 6, chunk=7)
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = z @ z.T
    assert (idx[:, 0] == np.arange(len(x))).all() and (dist[:, 0] == 0).all()
    for i in range(len(x)):
        np.testing.assert_allclose(dist[i, 1:], np.sort(np.delete(1 - cos[i], i))[:5], atol=1e-5)
    assert (np.diff(dist, axis=1) >= -1e-6).all()


def test_knn_accuracy_separable_random_and_ties() -> None:
    x, labels = blobs()
    idx, _ = M.knn_graph(x, 6)
    assert M.knn_accuracy(idx, labels, k=5) >= 0.99
    shuffled = np.random.default_rng(1).permutation(labels)
    assert M.knn_accuracy(idx, shuffled, k=5) < 0.7
    # point 0's neighbours (after itself): classes 1, 2, 2, 1 -> tie 2:2, the nearer (class 1) wins
    neighbours = np.array([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 3, 0, 1, 4], [3, 2, 0, 1, 4], [4, 1, 0, 2, 3]])
    assert M.knn_accuracy(neighbours, np.array([1, 1, 2, 2, 1]), k=4) == pytest.approx(0.6)


def test_kmeans_and_silhouette_on_separable_blobs() -> None:
    x, labels = blobs()
    clusters = M.kmeans_labels(x, 3)
    for c in range(3):  # every cluster is one class
        assert len(set(labels[clusters == c])) == 1
    assert M.silhouette(x, clusters) > 0.5
    assert M.silhouette(x, np.zeros(len(x), np.int64)) is None
    quality = M.cluster_quality(x, M.knn_graph(x, 6)[0], None, clusters)
    assert quality.knn_accuracy is None and quality.headline()[0] == "silhouette"


def test_tiles_without_a_class_neither_ask_nor_vote() -> None:
    """The numbers audit: six tiles of no class (-1) made the majority rate fail, and alone the kNN accuracy took
    them as queries whose votes went to the last class."""
    x, labels = blobs()
    unlabeled = labels.copy()
    unlabeled[::7] = -1  # NO_CLASS
    keep = unlabeled >= 0
    graph = M.knn_graph(x, 6)[0]
    quality = M.cluster_quality(x, graph, unlabeled, M.kmeans_labels(x, 3))
    alone = M.knn_accuracy(M.knn_graph(x[keep], 6)[0], labels[keep], k=5)
    assert quality.queries == int(keep.sum()) and quality.knn_accuracy == pytest.approx(alone) and alone >= 0.99
    assert quality.majority_rate == pytest.approx(M.majority_rate(labels[keep]))
    answers = np.array(quality.knn_right)  # per tile, for a paired comparison of two maps: -1 where no class
    assert len(answers) == len(x) and (answers[~keep] == -1).all() and answers[keep].mean() == pytest.approx(alone)
    assert M.cluster_quality(x, graph, np.full(len(x), -1), M.kmeans_labels(x, 3)).knn_accuracy is None


def test_voters_come_from_other_places_and_colour_is_the_reference() -> None:
    """A review: 0.75 by 5-NN looked learned where the tiles' colours alone scored 0.79; neighbours of one scene
    (the same field seen again) voted for each other. Here each place is one class's near copies, so voters of the
    same place answer everything and voters of other places only what the features know."""
    rng = np.random.default_rng(0)
    places = np.repeat(np.arange(12), 8)
    labels = places % 3
    x = rng.normal(size=(12, 16))[places] + 0.01 * rng.normal(size=(96, 16))  # places apart, classes not
    within = M.knn_accuracy(M.knn_graph(x, 6)[0], labels, k=5)
    across = M.knn_right_across(x, labels, places, k=5)
    assert within == 1.0 and across.mean() < 0.7
    colours = labels[:, None] + 0.1 * rng.normal(size=(96, 6))  # colour alone knows the class
    q = M.cluster_quality(x, M.knn_graph(x, 6)[0], labels, M.kmeans_labels(x, 3), places=places, colours=colours)
    assert q.neighbours_from == M.OTHER_PLACES and q.knn_accuracy == pytest.approx(across.mean())
    assert q.colour_accuracy == 1.0 and len(q.colour_right) == 96 and "colour statistics alone scores 1.000" in \
        q.headline()[2]
    one = M.cluster_quality(x, M.knn_graph(x, 6)[0], labels, M.kmeans_labels(x, 3), places=np.zeros(96, int))
    assert one.neighbours_from == M.ANY_TILE and one.knn_accuracy == within and one.colour_accuracy is None


def test_a_voter_is_never_of_its_own_place_and_gaps_do_not_vote() -> None:
    x = np.array([[0.0, 1.0], [0.0, 1.01], [0.5, 1.0], [1.0, 0.0]], np.float32)
    labels, places = np.array([0, 0, 1, 0]), np.array([0, 0, 1, 1])
    # tile 0's voters of another place: tile 2 (class 1, nearer) and tile 3 (class 0); k=1 takes tile 2; tile 1
    # (its own place, class 0) would have answered it right
    assert M.knn_right_across(x, labels, places, k=1).tolist() == [False, False, False, True]
    # tiles 0-2 share a place: each has one voter (tile 3, class 0) and two gaps, which must not vote for class 1
    assert M.knn_right_across(x, np.array([1, 1, 1, 0]), np.array([0, 0, 0, 1]), k=3).tolist() == [False] * 4


@pytest.mark.slow
def test_umap_is_deterministic_and_keeps_blobs_apart() -> None:
    x, labels = blobs()
    a, b = M.umap_2d(x), M.umap_2d(x)
    assert a.shape == (len(x), 2) and np.array_equal(a, b)
    centres = np.stack([a[labels == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(a[labels == c] - centres[c], axis=1).mean() for c in range(3))
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread
    with pytest.raises(E.EmbeddingError, match="at least"):
        M.umap_2d(x[:3])


def test_warm_up_makes_a_real_map_of_its_clusters() -> None:
    coords = M.warm_up()
    assert coords.shape == (300, 2) and np.isfinite(coords).all()
    rng = np.random.default_rng(0)  # the same draw as warm_up: the points' cluster labels
    rng.normal(size=(4, 32))
    labels = rng.integers(0, 4, 300)
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, -1.0)  # each point itself first, as knn_accuracy expects
    assert M.knn_accuracy(np.argsort(d, axis=1)[:, :6], labels, k=5) > 0.9  # the 4 clusters stay apart


# ------------------------------------------------------------------------------------------------ the pipeline, cache
def test_compute_then_cache_hit_returns_identical_arrays_fast(data_dir: Path, checkpoint: Path) -> None:
    t = time.perf_counter()
    first = E.compute_embedding(checkpoint, TINY, 30, input_size=32, clusters=3)
    cold = time.perf_counter() - t
    assert not first.from_cache
    assert first.indices.tolist() == E.tile_subset(40, 30).tolist()
    assert first.features.shape == (30, 512) and first.coords.shape == (30, 2) and np.isfinite(first.coords).all()
    ds = SyntheticAerial(num_tiles=40, tile_size=32, progress=False)
    assert first.dominant.tolist() == [ds.dominant_class(i) for i in first.indices]
    assert set(first.clusters.tolist()) == {0, 1, 2} and first.quality.knn_accuracy is not None
    folder = data_root() / "embeddings" / first.key
    assert json.loads((folder / "meta.json").read_text())["n_tiles"] == 30
    t = time.perf_counter()
    again = E.compute_embedding(checkpoint, TINY, 30, input_size=32, clusters=3)
    warm = time.perf_counter() - t
    assert again.from_cache and warm < 0.5 and warm < cold / 5
    for name in ("indices", "features", "coords", "dominant", "clusters"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert again.quality == first.quality
    assert E.find_cached(checkpoint, TINY, 30, input_size=32, clusters=3).key == first.key
    assert E.find_cached(checkpoint, TINY, 31, input_size=32, clusters=3) is None  # other n, other key
    assert E.find_cached(checkpoint, TINY, 30, input_size=48, clusters=3) is None


def test_cache_key_follows_the_checkpoint_content(tmp_path: Path, checkpoint: Path, data_dir: Path) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(checkpoint.read_bytes())
    assert E.embedding_key(copy, TINY, 30) == E.embedding_key(checkpoint, TINY, 30)
    copy.write_bytes(checkpoint.read_bytes()[:-1] + b"\0")
    assert E.embedding_key(copy, TINY, 30) != E.embedding_key(checkpoint, TINY, 30)


def test_tile_subset_is_seeded_sorted_and_whole_when_asked_for_all() -> None:
    a = E.tile_subset(1000, 50)
    assert a.tolist() == E.tile_subset(1000, 50).tolist() and len(set(a)) == 50 and (np.diff(a) > 0).all()
    assert E.tile_subset(10, 50).tolist() == list(range(10))


def test_synthetic_tiles_do_not_depend_on_the_set_size(data_dir: Path) -> None:
    small = SyntheticAerial(num_tiles=6, tile_size=16, seed=2, progress=False)
    large = SyntheticAerial(num_tiles=9, tile_size=16, seed=2, progress=False)
    assert np.array_equal(small.images[:], large.images[:6])
    cfg = DataConfig(name="synthetic", num_tiles=6, tile_size=16, seed=2, pretrain_splits=["train", "val", "test"])
    assert E.same_tiles(cfg, cfg.model_copy(update={"num_tiles": 9}))
    assert not E.same_tiles(cfg, cfg.model_copy(update={"seed": 3}))
    assert not E.same_tiles(cfg, cfg.model_copy(update={"tile_size": 32}))
    train_only = cfg.model_copy(update={"pretrain_splits": ["train"]})  # the split depends on the set size
    assert E.same_tiles(train_only, train_only) and not E.same_tiles(train_only, cfg)
    assert not E.same_tiles(train_only, train_only.model_copy(update={"num_tiles": 9}))


# ------------------------------------------------------------------------------------------------ flagged pairs
def test_segments_keep_pairs_with_both_tiles_embedded_once() -> None:
    indices = np.array([2, 5, 7, 9])
    coords = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], np.float32)
    pairs = pd.DataFrame({"step": [1, 2, 3, 4, 5], "anchor_index": [2, 9, 7, 3, 5],
                          "candidate_index": [9, 2, 5, 5, 5], "calibrated": [False, True, False, True, True]})
    seg = E.flagged_segments(pairs, indices, coords)  # (2,9) twice; (7,5); 3 not embedded; (5,5) itself
    assert len(seg) == 2
    first = seg.set_index(["anchor_index", "candidate_index"]).loc[(2, 9)]
    assert (first.x0, first.y0, first.x1, first.y1) == (0, 0, 3, 3)
    assert bool(first.calibrated) and first.times == 2 and first.first_step == 1
    other = seg.set_index(["anchor_index", "candidate_index"]).loc[(5, 7)]
    assert (other.x0, other.x1) == (1, 2) and not bool(other.calibrated)
    assert E.flagged_segments(pairs.iloc[:0], indices, coords).empty


def test_segments_for_a_false_run_its_own_data(populated_store: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))  # the shared store stays unchanged
    runs = {r.id.rsplit("-", 1)[-1]: r for r in list_runs(populated_store)}
    ckpt = runs["false"].checkpoint_dir / "encoder.safetensors"
    own = E.checkpoint_data(ckpt)
    emb = E.compute_embedding(ckpt, own, own.num_tiles, input_size=32)
    segments, message = E.segments_for(ckpt, own, emb)
    pairs = {tuple(sorted(p)) for p in
             ((r["anchor_index"], r["candidate_index"]) for r in runs["false"].flagged_pairs())}
    assert segments is not None and len(segments) == len(pairs) and "flagged pairs" in message
    assert {tuple(sorted(p)) for p in zip(segments["anchor_index"], segments["candidate_index"])} == pairs
    few, message = E.segments_for(ckpt, own, emb, most=2)  # hundreds of lines hid the map: the most flagged only
    assert len(few) == 2 and list(few["times"]) == sorted(segments["times"], reverse=True)[:2]
    assert message.startswith(f"the 2 most often flagged of the {len(pairs)} flagged pairs") and len(pairs) > 2
    other = own.model_copy(update={"seed": 5})
    assert E.segments_for(ckpt, other, emb)[0] is None and "own data set" in E.segments_for(ckpt, other, emb)[1]
    off = runs["infonce"].checkpoint_dir / "encoder.safetensors"
    assert "FALSE was off" in E.segments_for(off, own, emb)[1]
    assert E.source_run(Path("checkpoints/synthetic_false_encoder.safetensors")) is None


def test_selected_tiles_read_customdata() -> None:
    points = [{"customdata": 7}, {"customdata": [3]}, {"customdata": 7}, {"x": 1}]
    assert E.selected_tiles(points) == [7, 3]
    assert E.selected_tiles([]) == []
