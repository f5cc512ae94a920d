"""The method names a comparison understands and the pretraining overrides each stands for.

Named methods (``simclr``, ``simclr_false_pa``, ...) are the paper's; any ``<base>+<detector>+<treatment>``
(``simclr+nearest+eliminate``, ``moco+oracle+attract``) and ``<base>+dcl`` are composed from the loss settings, so a
new detector or treatment in ``core.ssl.detectors`` is a new comparable method without an edit here.
"""
from __future__ import annotations

METHODS: dict[str, list[str]] = {
    "random": [],
    "simclr": ["method=simclr", "loss.name=info_nce"],
    "simclr_false": ["method=simclr", "loss.name=false", "loss.selection=global"],
    "simclr_false_pa": ["method=simclr", "loss.name=false", "loss.selection=per_anchor"],
    "moco": ["method=moco", "loss.name=info_nce"],
    "moco_false": ["method=moco", "loss.name=false", "loss.selection=global"],
    "moco_false_pa": ["method=moco", "loss.name=false", "loss.selection=per_anchor"],
}
BASES = ("simclr", "moco")


def method_overrides(method: str) -> list[str] | None:
    """The pretraining overrides of a method name, or None for an unknown one."""
    if method in METHODS:
        return METHODS[method]
    from ..ssl.losses import DETECTORS, TREATMENTS

    parts = method.split("+")
    if len(parts) == 2 and parts[0] in BASES and parts[1] == "dcl":
        return [f"method={parts[0]}", "loss.name=dcl"]
    if len(parts) == 3 and parts[0] in BASES and parts[1] in DETECTORS and parts[2] in TREATMENTS:
        return [f"method={parts[0]}", "loss.name=false", f"loss.detector={parts[1]}", f"loss.treatment={parts[2]}"]
    return None


def all_methods() -> list[str]:
    """Every method a comparison can run, the named ones first, then per base DCL and each detector x treatment
    (what a form offers: nothing a config accepts is missing from it)."""
    from ..ssl.losses import DETECTORS, TREATMENTS

    composed = [f"{b}+dcl" for b in BASES] + [f"{b}+{d}+{t}" for b in BASES for d in DETECTORS for t in TREATMENTS]
    return [*METHODS, *composed]


def unknown_method_message(method: str) -> str:
    return (f"unknown method {method!r}; choose from {', '.join(METHODS)}, or name a base, a detector and a "
            "treatment (e.g. simclr+nearest+eliminate), or a base and dcl (simclr+dcl)")
