"""The confusion heatmap of a test result (the Fine-tune page's scores), in plotly, without streamlit: testable."""
from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from workbench.segment_view import readable_class


def confusion_figure(result: dict[str, Any]) -> go.Figure:
    """Rows: true class, as % of the row; the first class at the top, as in a table. A class the test scenes do not
    hold has no row to divide: it is left blank and named so, not drawn as a row of zeros."""
    cm = np.asarray(result["confusion"], dtype=float)
    total = cm.sum(1, keepdims=True)
    norm = np.where(total > 0, 100 * cm / np.maximum(total, 1), np.nan)
    names = [readable_class(n) for n in result["iou"]]
    rows = [n if t > 0 else f"{n} (none in the test)" for n, t in zip(names, total[:, 0])]
    fig = go.Figure(go.Heatmap(z=norm, x=names, y=rows, colorscale="Blues", texttemplate="%{z:.0f}",
                               colorbar=dict(title="% of row"),
                               hovertemplate="true %{y}, predicted %{x}: %{z:.1f} %<extra></extra>"))
    fig.update_layout(title="Confusion matrix (% of true class)", xaxis_title="predicted",
                      yaxis=dict(title="true", autorange="reversed"))
    return fig
