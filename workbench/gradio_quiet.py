"""Gradio inputs whose out-of-range API values are one line for the client and nothing in the server log.

Why: Gradio checks a slider's bounds and a dropdown's choices itself (in ``preprocess``), and its ``gr.Error``
defaults to printing a traceback to the server's console. A client sending ``opacity=2`` made a ten-line traceback
in the log of a server that did nothing wrong. These subclasses raise the same message without it. They are
Gradio "templates" (``is_template``): the browser draws them as the plain slider and dropdown.
"""
from __future__ import annotations

from typing import Any

import gradio as gr


def _quiet(preprocess: Any, component: Any, payload: Any) -> Any:
    try:
        return preprocess(component, payload)
    except gr.Error as err:
        raise gr.Error(err.message, print_exception=False) from None


class QuietSlider(gr.Slider):
    """``gr.Slider``; a value out of its range is refused without a traceback in the server log."""

    is_template = True

    def preprocess(self, payload: float) -> float:
        return _quiet(gr.Slider.preprocess, self, payload)


class QuietDropdown(gr.Dropdown):
    """``gr.Dropdown``; a value that is not among its choices is refused without a traceback in the server log."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return _quiet(gr.Dropdown.preprocess, self, self._as_choice(payload))

    def _as_choice(self, payload: Any) -> Any:
        """The API's schema lists number choices as strings ("256"), as a client then sends them: such a string is
        that choice."""
        if isinstance(payload, str):
            for _, value in self.choices:
                if not isinstance(value, str) and str(value) == payload:
                    return value
        return payload
