"""A pretraining folder of files that hold no data (issue 29): all-NaN or all-nodata GeoTIFFs used to give 64
empty tiles trained on without a word; now each such file is skipped with the reason, and a folder of nothing
else is refused in one line as segmentation refuses those files. A file with data beside them is kept."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from core.data import DataError, ImageFolderTiles


def tif(path: Path, arr: np.ndarray, nodata: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                           dtype=str(arr.dtype), nodata=nodata, transform=from_origin(0, 64, 1, 1)) as dst:
            dst.write(arr)
    return path


@pytest.mark.parametrize("bands", [None, ["R", "G", "B"]])
def test_a_folder_of_empty_files_is_refused_and_an_empty_file_beside_data_is_skipped(tmp_path: Path,
                                                                                       bands) -> None:
    empty = tmp_path / "empty"
    tif(empty / "nan.tif", np.full((3, 48, 48), np.nan, np.float32))
    tif(empty / "zero.tif", np.zeros((3, 48, 48), np.uint16), nodata=0)
    with pytest.warns(UserWarning, match="every pixel is no data"):
        with pytest.raises(DataError, match=r"no readable images .* \(2 skipped; .*every pixel is no data"):
            ImageFolderTiles(empty, tile_size=32, cache_root=tmp_path / "cache", progress=False, bands=bands)

    mixed = tmp_path / "mixed"
    tif(mixed / "nan.tif", np.full((3, 48, 48), np.nan, np.float32))
    tif(mixed / "good.tif", np.random.default_rng(0).integers(1, 4000, (3, 48, 48)).astype(np.uint16), nodata=0)
    with pytest.warns(UserWarning, match="every pixel is no data"):
        ds = ImageFolderTiles(mixed, tile_size=32, cache_root=tmp_path / "cache", progress=False, bands=bands)
    assert {s["file"] for s in ds.meta["sources"]} == {"good.tif"}
    assert [rel for rel, _ in ds.skipped] == ["nan.tif"]
