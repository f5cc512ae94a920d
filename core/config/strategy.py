"""The name of a pretraining run's false-negative handling, read from its loss config (a raw dict, as run folders
keep it): what tables, cards and pages print, so that every place says the same, and the oracle always says it reads
labels."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ORACLE_MARK = "oracle (uses labels)"  # the ceiling, never a method: every table marks it so


def loss_name(loss: Mapping[str, Any] | None) -> str:
    """``info_nce``, ``false`` or ``dcl`` (YAML's bare ``false`` is the FALSE loss, the default)."""
    name = (loss or {}).get("name", "false")
    return "false" if name is False else str(name)


def strategy_label(loss: Mapping[str, Any] | None) -> str:
    """``InfoNCE``, ``FALSE`` (fnsd + fncc), ``DCL (tau+ 0.1)``, or ``<detector> + <treatment>`` for the other
    false-negative handlings, the oracle marked as reading labels; FNSD's per-anchor selection says so."""
    loss = loss or {}
    name = loss_name(loss)
    if name == "info_nce":
        return "InfoNCE"
    if name == "dcl":
        return f"DCL (tau+ {loss.get('tau_plus', 0.1):g})"
    detector, treatment = loss.get("detector", "fnsd"), loss.get("treatment", "fncc")
    # FNSD's per-anchor top-k, told apart from the reference's global selection (both read "FALSE" in a review)
    per_anchor = " (per anchor)" if detector == "fnsd" and loss.get("selection") == "per_anchor" else ""
    if (detector, treatment) == ("fnsd", "fncc"):
        return "FALSE" + per_anchor
    shown = ORACLE_MARK if detector == "oracle" else detector
    return f"{shown} + {treatment}{per_anchor}"


def method_and_strategy(method: str, loss: Mapping[str, Any] | None) -> str:
    """A pretraining run's name in tables: its method and its handling, spaced as the handling's own parts
    ("simclr + FALSE", "moco + nearest + eliminate")."""
    return f"{method} + {strategy_label(loss)}"


HANDLING_KEYS = ("detector", "treatment", "selection", "topk", "similarity", "support_views", "alpha", "threshold",
                 "symmetric")  # read only by the false-negative handling (loss ``false``)


def unread_loss_keys(loss: Mapping[str, Any] | None) -> set[str]:
    """The ``loss.*`` settings this loss does not read: a detector's settings under InfoNCE or DCL, DCL's prior
    elsewhere, the similarity bound of a detector other than nearest or support, support's extra views elsewhere,
    the selection of any detector but FNSD, the oracle's top-k, FNCC's alpha under another treatment.
    Why: a config keeps every default, so an InfoNCE run "has" ``detector: fnsd``; tables that group or compare runs
    by it would put InfoNCE among the FNSD runs."""
    name = loss_name(loss)
    keys = set() if name == "false" else set(HANDLING_KEYS)
    if name != "dcl":
        keys.add("tau_plus")
    detector = (loss or {}).get("detector", "fnsd")
    if detector not in ("nearest", "support"):  # a similarity bound is theirs alone, the extra views support's
        keys.add("similarity")
    if detector != "support":
        keys.add("support_views")
    if detector != "fnsd":  # the other detectors pick per anchor; the oracle takes every same-class tile, no top-k
        keys.add("selection")  # (a walkthrough's oracle run kept "selection: global" while its report said per anchor)
    if detector == "oracle":
        keys.add("topk")
    if (loss or {}).get("treatment", "fncc") != "fncc":  # FNCC's weight (its gate still counts frac_above_threshold)
        keys.add("alpha")
    return keys


def uses_labels(loss: Mapping[str, Any] | None) -> bool:
    """Whether the loss read labels (the oracle detector): a ceiling, not a label-free method."""
    loss = loss or {}
    return loss_name(loss) == "false" and loss.get("detector", "fnsd") == "oracle"


def run_name(method: str, loss: Mapping[str, Any], data: str | None = None) -> str:
    """A run's name as the Pretrain page and the command line make it: data, method, then the loss ("info_nce",
    "dcl", "false" for FALSE itself) or, for another false-negative handling, its detector and treatment
    ("demo-simclr-nearest-eliminate": no "false" in a run that is not FALSE, as the tables name it). One order
    everywhere: a walkthrough saw "demo-false-simclr" beside "simclr-info_nce" and "dubai_aerial-simclr-false"."""
    name = loss_name(loss)
    handling = (str(loss.get("detector", "fnsd")), str(loss.get("treatment", "fncc")))
    parts = ([data] if data else []) + [method]
    return "-".join(parts + (list(handling) if name == "false" and handling != ("fnsd", "fncc") else [name]))


def data_tag(preset_name: str | None, method: str, loss: Mapping[str, Any]) -> str | None:
    """The data part of a preset's name made by ``run_name`` ("demo" of "demo-simclr-false", the preset's own method
    and loss), else None: "false-simclr-paper" is no data-method-loss name, and its "false" no data set."""
    head, sep, _ = (preset_name or "").partition(f"-{method}-")
    return head if sep and head and preset_name == run_name(method, loss, head) else None
