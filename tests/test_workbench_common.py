"""Small pieces of the app that need no page: chart axes, form error wording."""
from __future__ import annotations

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
