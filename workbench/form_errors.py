"""A refused launch shows every wrong setting at once: each under its own widget, and all in one list above the
outcome, in the form's words (its labels), not the config's keys.

A page names its fields once (``{label: config field}``), draws its widgets in ``fe.columns(...)`` instead of
``st.columns(...)`` (a widget whose label is in the table gets the error of the last Launch beneath it) and gives its
submit button ``key=fe.submit_key``. Why a rerun:
a form is drawn before its Launch is handled, so the errors of a refused launch are kept in the session and the page
is drawn again with them; the next Launch clears them.
"""
from __future__ import annotations

import re
from typing import Any

import streamlit as st

from core.config import ConfigError
from core.store.safepaths import PathRefused, resolve_under
from workbench.common import literal

WIDGETS = {"number_input", "text_input", "selectbox", "radio", "toggle", "checkbox", "multiselect", "slider"}


NUMBER_ARGS = ("min_value", "max_value", "value", "step", "format")


def without_bounds(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A number field's arguments with its range dropped. Why: the browser holds back a form whose number is out of
    range, with a mark on the field only, so "Launch" seemed dead; unbounded, the value reaches the config, which
    refuses it in words beside the field and in the list. The step keeps the field's type (int or float)."""
    given = dict(zip(NUMBER_ARGS, args)) | kwargs
    low = given.pop("min_value", None)
    given.pop("max_value", None)
    if given.get("step") is None and low is not None:
        given["step"] = 1 if isinstance(low, int) else 0.01
    return given


def number_field(container: Any, label: str, *args: Any, **kwargs: Any) -> Any:
    """``container.number_input`` without its range, for a form that checks its values itself (see above)."""
    return container.number_input(label, **without_bounds(args, kwargs))


class _Column:
    """A Streamlit column whose input widgets show their field's error beneath them."""

    def __init__(self, container: Any, form: "FormErrors") -> None:
        self._container, self._form = container, form

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._container, name)
        if name not in WIDGETS:
            return attr

        def widget(label: str, *args: Any, **kwargs: Any) -> Any:
            if name == "number_input" and label in self._form.fields:  # the config judges it (others keep theirs)
                args, kwargs = (), without_bounds(args, kwargs)
            value = attr(label, *args, **kwargs)
            msg = self._form.error_of(label, value)
            if msg:
                self._container.markdown(f":red[⚠ {literal(msg)}]")
            return value

        return widget


class FormErrors:
    def __init__(self, form: str, fields: dict[str, str]) -> None:
        self.state_key, self.submit_key = f"{form}-errors", f"{form}-launch"
        self.values_key = f"{form}-refused-values"  # each refused field's value, to see when it is changed
        self.fields = fields  # the form's label -> the config field it sets
        self.labels = {key: label for label, key in fields.items()}
        self.refused: list[tuple[str, str]] = []  # typed paths the guard refused in this Launch
        if st.session_state.get(self.submit_key):  # Launch pressed: this run judges the form afresh
            self.start()

    def columns(self, spec: int | list[int]) -> list[_Column]:
        return [_Column(c, self) for c in st.columns(spec)]

    def _errors(self) -> dict[str, str]:
        return st.session_state.get(self.state_key) or {}

    def error_of(self, label: str, value: Any = None) -> str | None:
        """The field's error from the last Launch, unless its value has changed since (``value``: the widget's now;
        a corrected field kept its red line until the next Launch)."""
        key = self.fields.get(label)
        msg = self._errors().get(key) if key else None
        if not msg:
            return None
        refused = st.session_state.setdefault(self.values_key, {})
        if label not in refused:
            refused[label] = value  # the first drawing after the Launch: the value that was refused
        elif refused[label] != value:
            self._errors().pop(key, None)  # changed: judged again at the next Launch
            st.rerun(scope="app")  # the list below the form too (a field in a fragment reruns the fragment alone)
        return self.in_words(msg)

    def in_words(self, text: str) -> str:
        """Config keys inside a message become the form's labels ("data.tile_size" -> “Tile size (px)”)."""
        def label(m: re.Match[str]) -> str:
            return f"“{self.labels[m.group(0)]}”" if m.group(0) in self.labels else m.group(0)

        return re.sub(r"\b[a-z_]+(?:\.[a-z_]+)+\b", label, text)

    def start(self) -> None:
        """A Launch was pressed: the errors of the previous one go."""
        st.session_state.pop(self.state_key, None)
        st.session_state.pop(self.values_key, None)

    def path(self, text: str, field: str, keep: str | None = None) -> str | None:
        """A folder or file typed in the form, checked by the path guard (``keep``: a preset's own value, taken as
        written). A refused path is noted for ``refuse`` and returned as typed, so the rest is still checked."""
        text = text.strip()
        if not text:
            return None
        if keep is not None and text == keep:
            return text
        try:
            return str(resolve_under(text))
        except PathRefused as err:
            self.refused.append((field, str(err)))
            return text

    def checked(self, cfg: Any) -> Any:
        """The validated config, unless a typed path was refused."""
        if self.refused:
            raise ConfigError(self.refused[0][1], [])
        return cfg

    def named_field(self, msg: str) -> str:
        """The form's field a config-wide problem is about: the first setting its message names that the form has
        ("loss.detector=oracle reads the labels, ..." is the Detector's; "data.val_fraction 0.6 + data.test_fraction
        0.6 hold out ..." the validation share's); else "" (the settings as a whole)."""
        return next((m for m in re.findall(r"\b[a-z_]+(?:\.[a-z_]+)+\b", msg) if m in self.labels), "")

    def refuse(self, err: ConfigError) -> None:
        """Keep every problem of a refused launch and draw the page again, so each shows beside its field (a
        config-wide check's beside the setting it names first)."""
        errors: dict[str, str] = {}
        for field, msg in [*self.refused, *err.problems]:
            # a section's check ("data": the shares held out) goes beside the field it names, as a whole-config one
            errors.setdefault(field if field in self.labels else self.named_field(msg) or field, msg)
        st.session_state[self.state_key] = errors
        st.session_state.pop(self.values_key, None)
        st.rerun()

    def summary(self) -> None:
        """All problems of the last Launch in one list, each named by its label (call after the form)."""
        errors = self._errors()
        if not errors:
            return
        lines = [f"- **{literal(self.labels.get(f, f or 'settings'))}**: {literal(self.in_words(m))}"
                 for f, m in errors.items()]
        st.error(f"Not launched: {len(errors)} setting{'s' if len(errors) > 1 else ''} to change\n\n"
                 + "\n".join(lines), icon="🚫")


BANDS_HELP = ("The file's bands to use, in order: names (R, G, B, NIR) or 0-based indices (0, 1, 2, 3). Empty: RGB by "
              "the usual rule. The synthetic set has R, G, B, NIR")


def bands_to_text(bands: list | None) -> str:
    """``data.bands`` as the form's text field shows it."""
    return "" if not bands else ", ".join(str(b) for b in bands)


def text_to_bands(text: str) -> list | None:
    """``R, G, B, NIR`` or ``0 1 2 3`` as ``data.bands``; empty: None (RGB). The config checks each entry."""
    parts = [p.strip() for p in (text.split(",") if "," in text else text.split())]  # "near infrared" is one band
    return [int(p) if p.isdigit() else p for p in parts if p] or None
