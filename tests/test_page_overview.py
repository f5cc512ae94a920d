"""The Overview page on a fresh machine: the shipped models and the scenes their scores are on, in a line each."""
from __future__ import annotations

from pathlib import Path

from tests.pages import open_page


def test_each_shipped_score_names_its_unseen_scenes_in_a_few_words(empty_store: Path) -> None:
    at = open_page("overview")
    assert not at.exception
    table = next(d.value for d in at.dataframe if "model" in d.value)
    on = dict(zip(table["model"], table["on"]))
    # Dubai's 9 test images are the images of one scene, its tile 3; DeepGlobe's 3 scenes are named in full
    assert on["shipped: dubai_seg"] == "test: 9 images of 1 scene (tile_3)"
    assert on["shipped: deepglobe_seg"] == "test: 3 scenes (train/104113, train/180902, train/3484)"
    assert on["shipped: synthetic_seg"].startswith("test: 200 scenes (synthetic-2, synthetic-4, synthetic-19 …)")
    assert "Start here" in [s.value for s in at.subheader]
