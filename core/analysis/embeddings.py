"""Embeddings of tiles under a pretrained encoder: features, a 2-D UMAP map, cluster quality, flagged pairs.

Why these choices (measured on 2 shared CPU cores, 5,000 tiles, ResNet-18 features of 512 dimensions):
  - Neighbours are computed exactly here (cosine, one chunked matrix product in torch, under a second) and handed
    to umap-learn as ``precomputed_knn``. Its own NN-descent would need numba to compile pynndescent first: that
    compile alone took about 25 s of a cold UMAP, exact neighbours cost nothing to compile and are exact.
  - ``random_state`` is fixed, which makes umap-learn run its layout in one thread. On two shared cores the parallel
    layout saves little, and a map the same on every call is what a disk cache and a side-by-side comparison need.
  - ``n_epochs=200`` (umap-learn's own choice above 10,000 points; it uses 500 below): the layout is settled by
    then and the step costs 2.5x less. ``init="spectral"`` keeps the global arrangement of the clusters (random
    init scatters them); it costs about 1 s warm and 3 s of compile cold.
  - Features run in bf16 autocast on a CPU with native bf16 (AVX512-BF16 / AMX), about twice as fast as fp32
    there; elsewhere fp32. The choice is part of the cache key.
  - ``warm_up()`` compiles umap-learn's numba functions on a tiny problem, at app start: the first map is not slower.

Results are cached under ``data_root()/embeddings/<key>/`` (.npy arrays + meta.json, published in one rename),
keyed by the checkpoint's content, the data set, the tiles, the input size, the precision and the UMAP settings.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import fn_scoring
from .pair_grid import class_css_colours, class_names
from ..store.checkpoint import CheckpointError, not_found, read_metadata
from ..config import SPLIT_NAMES, ConfigError, DataConfig, upgrade_run_config
from ..data import build_dataset, data_root
from ..data.augment import normalise
from ..imaging.bands import bands_of, is_rgb
from ..data.paths import publish_dir, temp_dir_for
from ..device import pick_device, pick_precision
from ..store.file_versions import file_sha256
from ..store.runs import NotARunError, Run, open_run
from ..data.protocols import TileSet
from ..data.seg_subset import place_ids
from .tile_colours import tile_colours
from .embedding_map import (MIN_TILES, ClusterQuality, EmbeddingError, UmapParams, cluster_quality, kmeans_labels,
                            knn_graph, umap_2d)

CACHE_VERSION = 2  # 2: kNN voters of other scenes, and the colour reference
SUBSET_SEED = 0  # which tiles a "first n of N" request embeds: a seeded sample, the same every time
Progress = Callable[[int, int], None]
Stage = Callable[[str], None]


@dataclass
class Embedding:
    """Embedded tiles: dataset indices, features, 2-D coordinates, dominant classes, k-means clusters."""

    key: str
    indices: np.ndarray  # (n,) int64 dataset tile indices
    features: np.ndarray  # (n, D) float32, global-average-pooled encoder output
    coords: np.ndarray  # (n, 2) float32 UMAP
    dominant: np.ndarray | None  # (n,) int64 dominant class, None without labels
    clusters: np.ndarray  # (n,) int64 k-means cluster
    quality: ClusterQuality
    meta: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False


# ------------------------------------------------------------------------------------------------ checkpoints
def checkpoint_card(path: str | Path) -> dict[str, Any]:
    """The checkpoint's card: the .json beside it (cheap) or, failing that, the one inside the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(not_found(path))
    try:
        card = json.loads(path.with_suffix(".json").read_text())
        if isinstance(card, dict) and card.get("encoder"):
            return card
    except (OSError, json.JSONDecodeError):
        pass
    card = read_metadata(path).get("card")
    if not isinstance(card, dict):
        raise CheckpointError(f"checkpoint {path} has no card saying which encoder it holds")
    return card


def checkpoint_data(path: str | Path) -> DataConfig | None:
    """The data set the checkpoint was pretrained on (from its card), or None when the card does not say."""
    try:
        config = checkpoint_card(path).get("config") or {}
        raw = upgrade_run_config(json.loads(json.dumps(config))).get("data") if isinstance(config, dict) else None
        return DataConfig.model_validate(raw) if isinstance(raw, dict) else None
    except (CheckpointError, ValueError):
        return None


def load_encoder(path: str | Path) -> nn.Module:
    """The encoder of a checkpoint (export, pretraining or segmentation), in eval mode."""
    from ..ssl.models import build_encoder  # smp, timm, torchvision: only when an encoder is needed

    name = checkpoint_card(path).get("encoder")
    if not name:
        raise CheckpointError(f"the card of {path} does not name its encoder")
    from ..ssl.models import checkpoint_bands

    bands = checkpoint_bands(path)
    return build_encoder(str(name), path, None if is_rgb(bands) else bands).eval()


# ------------------------------------------------------------------------------------------------ data
def data_identity(data: DataConfig) -> dict[str, Any]:
    """What determines the tiles of a data config (augmentation settings do not), for cache keys."""
    split = {"pretrain_splits": data.pretrain_splits, "val_fraction": data.val_fraction,
             "test_fraction": data.test_fraction, "seed": data.seed} if data.labeled else {}
    if data.bands is not None:  # RGB keys stay as they were
        split["bands"] = [str(b) for b in data.bands]
    split |= {"split_unit": data.split_unit} if data.split_unit and data.labeled else {}  # other sets' keys stay
    if data.name == "synthetic":
        from ..data.synthetic import GENERATOR_VERSION

        return {"name": "synthetic", "num_tiles": data.num_tiles, "tile_size": data.tile_size, "seed": data.seed,
                "generator": GENERATOR_VERSION, **split}
    from ..data.folder import find_images

    root = Path(data.root or "").expanduser().resolve()
    listing = [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns]
               for p in (find_images(root) if root.is_dir() else [])]
    digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]
    return {"name": data.name, "root": str(root), "tile_size": data.tile_size, "files": digest,
            "tile_overlap": data.tile_overlap, "class_table": data.class_table, **split}


def same_tiles(a: DataConfig, b: DataConfig) -> bool:
    """Whether tile i means the same tile in both data sets (so one's pair indices apply to the other).

    Synthetic tile i is rendered from (seed, i) at the tile size alone; a labeled set's tile i depends on its split
    too (pretraining reads only the scenes of ``pretrain_splits``).
    """
    if a.name != b.name or a.tile_size != b.tile_size or a.labeled != b.labeled or a.bands != b.bands:
        return False  # bands: a folder read with bands skips files that lack one, so tile i moves
    every = list(SPLIT_NAMES)
    if a.name == "synthetic" and a.pretrain_splits == every and b.pretrain_splits == every:
        return a.seed == b.seed  # no split applied: tile i is generated tile i, whatever the set size
    if a.labeled and (a.pretrain_splits, a.val_fraction, a.test_fraction, a.seed, a.tile_overlap, a.split_unit) != \
            (b.pretrain_splits, b.val_fraction, b.test_fraction, b.seed, b.tile_overlap, b.split_unit):
        return False
    if a.name == "synthetic":
        return a.num_tiles == b.num_tiles
    return Path(a.root or "").expanduser().resolve() == Path(b.root or "").expanduser().resolve()


def tile_subset(n_total: int, n: int, seed: int = SUBSET_SEED) -> np.ndarray:
    """Sorted indices of ``n`` tiles out of ``n_total``: all of them, or a seeded sample spread over the set."""
    if n >= n_total:
        return np.arange(n_total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n, replace=False)).astype(np.int64)


# ------------------------------------------------------------------------------------------------ features
def resolve_precision(requested: str, device: torch.device) -> str:
    """fp32 or bf16 for the encoder's features, by ``core.device.pick_precision``'s inference rule (fp16 becomes
    fp32: its range does not suit unnormalised features)."""
    if requested not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision: choose auto, fp32 or bf16, got {requested!r}")
    name = pick_precision(requested, device, inference=True).name
    return "bf16" if name == "bf16" else "fp32"


def _prepare(images: torch.Tensor, input_size: int, device: torch.device,
             bands: Sequence[str] | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float at ``input_size`` px, normalised per band as the encoder was trained."""
    x = images.to(device, non_blocking=True).float().div_(255)
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False)
    return normalise(x, bands)


def encoder_features(encoder: nn.Module, dataset: TileSet, indices: Sequence[int] | np.ndarray, input_size: int = 64,
                     batch_size: int = 128, precision: str = "auto", device: torch.device | None = None,
                     progress: Progress | None = None) -> np.ndarray:
    """Global-average-pooled features (n, D) float32 of the given tiles, in batches, without autograd."""
    from ..ssl.models import pooled_features

    device = device or next(encoder.parameters()).device
    encoder = encoder.to(device).eval()
    use_bf16 = resolve_precision(precision, device) == "bf16"
    idx = np.asarray(indices, np.int64)
    out: list[np.ndarray] = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        for start in range(0, len(idx), batch_size):
            x = _prepare(dataset.get_images(idx[start:start + batch_size]), input_size, device, bands_of(dataset))
            out.append(pooled_features(encoder, x).float().cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, len(idx)), len(idx))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


# ------------------------------------------------------------------------------------------------ cache
def embedding_key(checkpoint: str | Path, data: DataConfig, n_tiles: int, input_size: int = 64,
                  umap: UmapParams = UmapParams(), clusters: int = 6, precision: str = "auto") -> str:
    """The cache key: everything that changes the result (the checkpoint by content, not by name)."""
    spec = {"version": CACHE_VERSION, "checkpoint": file_sha256(checkpoint), "data": data_identity(data),
            "n_tiles": int(n_tiles), "subset_seed": SUBSET_SEED, "input_size": int(input_size),
            "precision": resolve_precision(precision, pick_device()), "umap": asdict(umap),
            "clusters": int(clusters)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def cache_dir(key: str) -> Path:
    return data_root() / "embeddings" / key


_ARRAYS = ("indices", "features", "coords", "dominant", "clusters")


def _save(emb: Embedding) -> None:
    """Publish the result folder in one rename; a concurrent writer of the same key simply wins."""
    final = cache_dir(emb.key)
    tmp = temp_dir_for(final)
    try:
        for name in _ARRAYS:
            value = getattr(emb, name)
            if value is not None:
                np.save(tmp / f"{name}.npy", value)
        meta = {**emb.meta, "quality": asdict(emb.quality)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        publish_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load(key: str) -> Embedding | None:
    """A cached result, or None when absent or incomplete (then it is simply computed again)."""
    folder = cache_dir(key)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {name: np.load(folder / f"{name}.npy") if (folder / f"{name}.npy").is_file() else None
                  for name in _ARRAYS}
        quality = ClusterQuality(**meta["quality"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(arrays[name] is None for name in ("indices", "features", "coords", "clusters")):
        return None
    return Embedding(key=key, quality=quality, meta=meta, from_cache=True, **arrays)


def find_cached(checkpoint: str | Path, data: DataConfig, n_tiles: int, input_size: int = 64,
                umap: UmapParams = UmapParams(), clusters: int = 6, precision: str = "auto") -> Embedding | None:
    """The cached result for these settings, without building the data set or computing anything."""
    return _load(embedding_key(checkpoint, data, n_tiles, input_size, umap, clusters, precision))


# ------------------------------------------------------------------------------------------------ the pipeline
def compute_embedding(checkpoint: str | Path, data: DataConfig, n_tiles: int, input_size: int = 64,
                      umap: UmapParams = UmapParams(), clusters: int = 6, precision: str = "auto",
                      progress: Progress | None = None, stage: Stage | None = None,
                      use_cache: bool = True) -> Embedding:
    """Features, UMAP map, dominant classes, k-means clusters and quality for ``n_tiles`` tiles of ``data``.

    Returns the disk-cached result when there is one (``use_cache``); otherwise computes and caches it.
    ``progress(done, total)`` follows the feature pass (tiles), ``stage(text)`` names each step.
    """
    say = stage or (lambda _text: None)
    key = embedding_key(checkpoint, data, n_tiles, input_size, umap, clusters, precision)
    if use_cache and (hit := _load(key)) is not None:
        return hit
    times: dict[str, float] = {}
    t = time.perf_counter()
    say("Loading the data set")
    dataset = build_dataset(data, progress=False)
    indices = tile_subset(len(dataset), n_tiles)
    if len(indices) < MIN_TILES:
        raise EmbeddingError(f"the data set has {len(indices)} tiles; a map needs at least {MIN_TILES}")
    say("Loading the encoder")
    from ..ssl.models import checkpoint_bands

    reads, has = checkpoint_bands(checkpoint), list(bands_of(dataset))
    if reads != has:
        raise EmbeddingError(f"{Path(checkpoint).name} reads bands {', '.join(reads)} but the data set gives "
                             f"{', '.join(has)}: embed it on data of its own bands")
    device = pick_device()
    encoder = load_encoder(checkpoint).to(device)
    times["load"] = time.perf_counter() - t
    say(f"Encoding {len(indices)} tiles at {input_size} px")
    t = time.perf_counter()
    features = encoder_features(encoder, dataset, indices, input_size, precision=precision, device=device,
                                progress=progress)
    times["features"] = time.perf_counter() - t
    say("UMAP")
    t = time.perf_counter()
    knn = knn_graph(features, max(umap.n_neighbors, 6))
    coords = umap_2d(features, umap, knn)
    times["umap"] = time.perf_counter() - t
    say("Clusters and quality")
    t = time.perf_counter()
    dominant_all = fn_scoring.dominant_classes(dataset)
    dominant = None if dominant_all is None else np.asarray(dominant_all[indices], np.int64)
    groups = kmeans_labels(features, clusters)
    places = place_ids(dataset)  # kNN voters of other places; colour statistics as the reference
    quality = cluster_quality(features, knn[0], dominant, groups, places=None if places is None else places[indices],
                              colours=tile_colours(dataset, indices) if dominant is not None else None)
    times["quality"] = time.perf_counter() - t
    meta = {"checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": file_sha256(checkpoint),
            "encoder": checkpoint_card(checkpoint).get("encoder"), "data": data.model_dump(mode="json"),
            "n_tiles": len(indices), "input_size": input_size, "umap": asdict(umap), "clusters": clusters,
            "precision": resolve_precision(precision, device), "device": str(device),
            "class_names": class_names(dataset), "class_colours": class_css_colours(dataset),
            "seconds": {k: round(v, 3) for k, v in times.items()}, "created": time.time()}
    emb = Embedding(key, indices, features, coords, dominant, groups, quality, meta)
    if use_cache:
        _save(emb)
    return emb


# ------------------------------------------------------------------------------------------------ flagged pairs
def source_run(checkpoint: str | Path) -> Run | None:
    """The pretraining run that wrote ``<run>/checkpoints/<file>``, or None for a checkpoint from elsewhere."""
    path = Path(checkpoint)
    if path.parent.name != "checkpoints":
        return None
    try:
        run = open_run(path.parent.parent)
    except NotARunError:
        return None
    return run if run.kind() == "pretrain" else None


def flagged_segments(pairs: pd.DataFrame, indices: np.ndarray, coords: np.ndarray) -> pd.DataFrame:
    """Line segments (x0, y0) -> (x1, y1) between anchor and candidate of each flagged pair whose two tiles are
    both embedded; a pair flagged several times is one segment (``times``, ``calibrated`` if ever)."""
    columns = ["anchor_index", "candidate_index", "x0", "y0", "x1", "y1", "calibrated", "times", "first_step"]
    if pairs.empty or len(indices) == 0:
        return pd.DataFrame(columns=columns)
    size = int(max(indices.max(), pairs["anchor_index"].max(), pairs["candidate_index"].max())) + 1
    position = np.full(size, -1, np.int64)
    position[indices] = np.arange(len(indices))
    a = position[pairs["anchor_index"].to_numpy()]
    c = position[pairs["candidate_index"].to_numpy()]
    inside = (a >= 0) & (c >= 0) & (a != c)
    if not inside.any():
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame({"lo": np.minimum(a, c)[inside], "hi": np.maximum(a, c)[inside],
                          "calibrated": pairs["calibrated"].to_numpy()[inside],
                          "step": pairs["step"].to_numpy()[inside]})
    grouped = frame.groupby(["lo", "hi"], sort=True).agg(calibrated=("calibrated", "any"),
                                                         times=("step", "size"), first_step=("step", "min"))
    lo, hi = grouped.index.get_level_values(0).to_numpy(), grouped.index.get_level_values(1).to_numpy()
    return pd.DataFrame({"anchor_index": indices[lo], "candidate_index": indices[hi],
                         "x0": coords[lo, 0], "y0": coords[lo, 1], "x1": coords[hi, 0], "y1": coords[hi, 1],
                         "calibrated": grouped["calibrated"].to_numpy(), "times": grouped["times"].to_numpy(),
                         "first_step": grouped["first_step"].to_numpy()})


def segments_for(checkpoint: str | Path, data: DataConfig, emb: Embedding,
                 most: int = 150) -> tuple[pd.DataFrame | None, str]:
    """The flagged pairs of the checkpoint's pretraining run as segments on this map (the ``most`` most often
    flagged: hundreds of lines hide the map), or None and why not."""
    run = source_run(checkpoint)
    if run is None:
        return None, "this checkpoint does not come from a pretraining run on this machine: no flagged pairs"
    try:
        cfg = fn_scoring.run_config(run)
    except ConfigError as err:
        return None, f"its run's config is unreadable ({err})"
    pairs = fn_scoring.load_pairs(run)
    reason = fn_scoring.nothing_flagged_reason(run, cfg, pairs)
    if reason:
        return None, reason
    if not same_tiles(cfg.data, data):
        d = cfg.data
        what = f"{d.name}, {d.tile_size} px, seed {d.seed}" if d.name == "synthetic" else f"folder {d.root}"
        return None, (f"the run's pairs index its own data set ({what}); embed that data set to draw them")
    segments = flagged_segments(pairs, emb.indices, emb.coords)
    if segments.empty:
        return None, f"none of the run's {len(pairs)} flagged pairs has both tiles among the embedded ones"
    if len(segments) > most:
        kept = segments.sort_values(["times", "first_step"], ascending=[False, True], kind="stable").head(most)
        return kept, (f"the {most} most often flagged of the {len(segments)} flagged pairs of run {run.id} with both "
                      "tiles on the map")
    return segments, f"{len(segments)} flagged pairs of run {run.id} with both tiles on the map"


def selected_tiles(points: Sequence[dict[str, Any]]) -> list[int]:
    """Dataset tile indices of selected plotly points (each carries its tile index as ``customdata``)."""
    out: list[int] = []
    for point in points or []:
        value = point.get("customdata")
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None and int(value) not in out:
            out.append(int(value))
    return out

