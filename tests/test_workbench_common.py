"""Small pieces of the app that need no page: chart axes, form error wording."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.common import curves_figure
from workbench.form_errors import FormErrors


def test_a_one_point_chart_gets_sensible_axes() -> None:
    fig = curves_figure({"run": pd.DataFrame({"step": [4], "miou": [0.12]})}, "miou", "Validation mIoU")
    assert tuple(fig.layout.xaxis.range) == (3, 5) and tuple(fig.layout.yaxis.range) == (0, 0.24)
    two = curves_figure({"run": pd.DataFrame({"step": [4, 8], "miou": [0.12, 0.2]})}, "miou", "m")
    assert two.layout.xaxis.range is None and two.layout.yaxis.range is None  # plotly's own for real curves


def test_config_keys_in_messages_become_the_forms_labels() -> None:
    fe = FormErrors("t", {"Tile size (px)": "data.tile_size", "Data folder": "data.root"})
    assert fe.in_words("data.tile_overlap must be smaller than data.tile_size") == \
        "data.tile_overlap must be smaller than “Tile size (px)”"
    assert fe.in_words("name=folder needs data.root, the data set folder") == \
        "name=folder needs “Data folder”, the data set folder"


def test_the_records_version_changes_when_a_resume_rewrites_the_records_at_the_same_size(tmp_path: Path) -> None:
    import os

    from core.store.runs import Run
    from workbench.common import records_version

    run = Run(tmp_path)
    assert records_version(run) == ((-1, 0), (-1, 0))
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 2.0}\n')
    before = records_version(run)
    metrics.write_text('{"step": 1, "loss": 3.0}\n')  # same size, as a resume's truncate-and-grow can leave it
    stat = metrics.stat()
    os.utime(metrics, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert records_version(run) != before


def test_the_weight_average_is_a_point_of_its_own_on_the_validation_curve(tmp_path: Path) -> None:
    import json

    from core.store.runs import Run
    from workbench.common import AVERAGE_MIOU, columns_figure, curve_frame

    rows = [{"step": 2, "loss": 1.0}, {"step": 2, "split": "val", "miou": 0.3},
            {"step": 4, "split": "val", "miou": 0.4},
            {"step": 4, "split": "val", "model": "weight average", "miou": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame = curve_frame(Run(tmp_path))
    assert frame["miou"].dropna().tolist() == [0.3, 0.4] and frame[AVERAGE_MIOU].dropna().tolist() == [0.5]
    fig = columns_figure(frame, ("miou", AVERAGE_MIOU), "Validation mIoU")
    assert [t.name for t in fig.data] == ["miou", AVERAGE_MIOU] and list(fig.data[1].y) == [0.5]


def test_errors_are_shown_verbatim() -> None:
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        from workbench.common import show_error

        show_error(ValueError("must be in (0, 1], got $2 or $3 in runs/*_s1"), "Not launched")

    at = AppTest.from_function(page).run()
    [box] = at.error
    from tests.pages import shown

    assert shown(box.value) == "Not launched: must be in (0, 1], got $2 or $3 in runs/*_s1"
    assert r"\$2" in box.value and r"\*\_s1" in box.value and r"1\]" in box.value  # no LaTeX, emphasis, link
