"""One pixel reader (issue 30): ``read_raster`` is the one entry for both pipelines and gives the same bytes as the
readers it stands for; ``core/imaging`` imports point one way; tile caches are keyed by the reading code itself, so
a change in reading rebuilds them (no hand-bumped number) while a comment or docstring does not."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data import ImageFolderTiles
from core.data import code_version as cv
from core.imaging.imageio import read_image
from core.imaging.raster import READER_MODULES, read_bands, read_raster

ROOT = Path(__file__).resolve().parent.parent


def _imports_within(folder: Path, package: str) -> dict[str, set[str]]:
    """Every import (module level or inside a function) of a package's modules from each other."""
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        name = path.stem
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    found.add(node.module.split(".")[0])
                elif node.level == 0 and node.module and node.module.startswith(package + "."):
                    found.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[2] for a in node.names if a.name.startswith(package + ".")}
        graph[name] = found - {name}
    return graph


def test_core_imaging_imports_point_one_way() -> None:
    graph = _imports_within(ROOT / "core/imaging", "core.imaging")
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*path, node])}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        state[node] = 2

    for module in sorted(graph):
        visit(module, [])
    assert "imageio" not in graph["bands"] and "tiffio" not in graph["bands"]  # the base layers read no files


def _tif(path: Path, data: np.ndarray, descriptions: list[str] | None = None) -> Path:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=str(data.dtype)) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or []):
            dst.set_band_description(i + 1, d)
    return path


def test_read_raster_gives_the_same_bytes_as_both_pipelines(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    png = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(png)
    wide = _tif(tmp_path / "b.tif", rng.integers(100, 4000, (4, 20, 24)).astype(np.uint16), ["Red", "Green", "Blue", "NIR"])
    for path in (png, wide):
        rgb = read_raster(path)
        assert rgb.names == ["R", "G", "B"]
        assert np.array_equal(rgb.pixels, read_image(path, orient=False, extra_bands=False).rgb)
    assert read_raster(wide).dtype == "uint16" and read_raster(png).dtype == "uint8"
    for request in (["NIR", "R", "G"], [3, 0]):
        got, want = read_raster(wide, request), read_bands(wide, request)
        assert np.array_equal(got.pixels, want.pixels) and got.names == want.names and got.stretch == want.stretch


def test_a_comment_or_docstring_is_no_change_but_code_is() -> None:
    a = 'def f(x):\n    """Why."""\n    return x + 1  # one more\n'
    b = 'def f(x):\n    """Why, said better."""\n    # a comment\n    return x + 1\n'
    c = 'def f(x):\n    """Why."""\n    return x + 2\n'
    assert cv.source_version(a) == cv.source_version(b) != cv.source_version(c)


def test_tile_caches_are_rebuilt_when_the_reading_code_changes(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "a.png")

    def tiles() -> ImageFolderTiles:
        return ImageFolderTiles(tmp_path / "imgs", tile_size=32, cache_root=tmp_path / "cache", progress=False)

    first = tiles()
    assert tiles().cache_dir == first.cache_dir  # the same code: the cache is reused
    real = cv.module_version
    changed = "core.imaging.pixels"
    assert changed in READER_MODULES
    monkeypatch.setattr(cv, "module_version", lambda name: "edited" if name == changed else real(name))
    rebuilt = tiles()
    assert rebuilt.cache_dir != first.cache_dir and (rebuilt.cache_dir / "meta.json").is_file()
    assert np.array_equal(np.asarray(rebuilt.images), np.asarray(first.images))  # same pixels, read again
    assert first.cache_dir.exists()  # superseded, but this live process still reads it: kept


@pytest.mark.parametrize("module", READER_MODULES)
def test_every_reader_module_has_a_version(module: str) -> None:
    assert len(cv.module_version(module)) == 12


def test_a_module_without_source_still_has_a_version(monkeypatch) -> None:
    """An install of compiled files only: the caches follow the compiled file instead of failing to build."""
    import inspect

    def no_source(_module):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    cv.module_version.cache_clear()
    try:
        assert len(cv.module_version("core.imaging.colours")) == 12
    finally:
        cv.module_version.cache_clear()


def test_a_tiff_without_georeferencing_that_pil_cannot_read_is_sized_without_a_warning(tmp_path: Path) -> None:
    """A five-band float TIFF (PIL gives up, rasterio reads it) warned NotGeoreferencedWarning when a labeled folder
    was listed: a plain image is no fault, and the warning named rasterio's internals."""
    import warnings

    import rasterio

    from core.data.seg_files import image_size

    path = tmp_path / "plain.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # writing it without a transform warns too: not what is tested
        with rasterio.open(path, "w", driver="GTiff", width=40, height=30, count=5, dtype="float32") as dst:
            dst.write(np.zeros((5, 30, 40), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_size(path) == (40, 30)
