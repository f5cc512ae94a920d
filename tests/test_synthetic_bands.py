"""The synthetic set's bands: a near-infrared band that behaves like real NIR, and R, G, B, NIR in any order."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.data.synthetic import SyntheticAerial
from core.data.synthetic_canvas import IMPERVIOUS, LOW_VEG, TREE
from core.data.synthetic_nir import nir_band
from core.imaging.bands import BandError

N, SIZE, SEED = 8, 64, 5


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    """Every test writes its caches under its own temp folder, never the repository's data/."""
    monkeypatch.setenv("FALSE_WB_DATA", str(tmp_path / "data"))


def _set(**kwargs) -> SyntheticAerial:
    return SyntheticAerial(num_tiles=N, tile_size=SIZE, seed=SEED, progress=False, **kwargs)


def test_nir_is_bright_on_vegetation_and_dark_on_paving():
    ds = _set(bands=["NIR"])
    nir, labels = np.asarray(ds.images[..., 0], np.float64), np.asarray(ds.labels)
    vegetation = nir[(labels == LOW_VEG) | (labels == TREE)]
    paving = nir[labels == IMPERVIOUS]
    assert vegetation.size > 1000 and paving.size > 1000
    assert vegetation.mean() > 150 and paving.mean() < 80
    assert vegetation.mean() - paving.mean() > 80
    assert nir.std() > 0 and len(np.unique(nir[labels == LOW_VEG])) > 10  # texture and noise, not a label map


def test_nir_is_deterministic(tmp_path):
    first = SyntheticAerial(root=tmp_path / "a", num_tiles=N, tile_size=SIZE, seed=SEED, progress=False,
                            bands=["NIR"])
    second = SyntheticAerial(root=tmp_path / "b", num_tiles=N, tile_size=SIZE, seed=SEED, progress=False,
                             bands=["NIR"])
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(np.load(first.cache_dir / "nir.npy"), np.load(second.cache_dir / "nir.npy"))
    rgb, labels = np.load(first.cache_dir / "images.npy")[0], np.asarray(first.labels[0])
    assert np.array_equal(nir_band(rgb, labels, 7), nir_band(rgb, labels, 7))
    assert not np.array_equal(nir_band(rgb, labels, 7), nir_band(rgb, labels, 8))  # the seed sets the noise


def test_no_bands_is_rgb_as_before():
    ds = _set()
    assert ds.images.shape == (N, SIZE, SIZE, 3) and ds.band_names == ("R", "G", "B")
    assert {p.name for p in ds.cache_dir.iterdir()} == {"images.npy", "labels.npy", "meta.json"}
    assert np.array_equal(ds.images, np.load(ds.cache_dir / "images.npy"))
    assert "bands" not in ds.meta
    rgb = _set(bands=["R", "G", "B"])  # R, G, B in order: images.npy itself, no copy
    assert rgb.band_names == ("R", "G", "B") and rgb.images.filename == ds.images.filename
    assert {p.name for p in ds.cache_dir.iterdir()} == {"images.npy", "labels.npy", "meta.json"}


def test_bands_in_any_order():
    rgb = _set()
    assert not (rgb.cache_dir / "nir.npy").exists()  # not built until asked for
    cir = _set(bands=["NIR", "R", "G"])
    nir = np.load(cir.cache_dir / "nir.npy")
    assert cir.band_names == ("NIR", "R", "G") and cir.images.shape == (N, SIZE, SIZE, 3)
    assert np.array_equal(cir.images[..., 0], nir)
    assert np.array_equal(cir.images[..., 1:], rgb.images[..., :2])
    assert cir.get_images([3, 1]).shape == (2, 3, SIZE, SIZE) and cir[2]["image"].shape == (3, SIZE, SIZE)
    four = _set(bands=["R", "G", "B", "NIR"])
    assert four.band_names == ("R", "G", "B", "NIR") and four.images.shape == (N, SIZE, SIZE, 4)
    assert np.array_equal(four.images[..., :3], rgb.images) and np.array_equal(four.images[..., 3], nir)
    assert np.array_equal(_set(bands=[0, 1, 2, 3]).images, four.images)  # indices work as names do
    assert json.loads((rgb.cache_dir / "meta.json").read_text()).get("bands") is None  # meta.json untouched
    mtime = (rgb.cache_dir / "nir.npy").stat().st_mtime_ns
    again = _set(bands=["R", "G", "B", "NIR"])  # reused, not rebuilt
    assert (rgb.cache_dir / "nir.npy").stat().st_mtime_ns == mtime and np.array_equal(again.images, four.images)
    assert not [p for p in rgb.cache_dir.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_a_band_the_set_lacks_is_named():
    with pytest.raises(BandError, match="SWIR1"):
        _set(bands=["R", "G", "SWIR1"])
    with pytest.raises(BandError, match="index 4"):
        _set(bands=[0, 4])
