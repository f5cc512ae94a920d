"""Contrastive methods as plug-ins: one object per method says everything the engine asks of it, registered here.

Why: SimCLR and MoCo v2 used to be if-chains in the model builder, the trainer, the config and the records, so a new
method touched four places. A method is now a ``Method``: its networks, its step, its BatchNorm policy, what its run
card adds, the config checks only it needs and how many negatives an anchor sees. ``register`` makes it a value of
``method`` in every config, form and command line; SimCLR and MoCo v2 (``core.ssl.methods``) register like any other,
and a file ``core/ssl/method_<name>.py`` that registers one is found without an edit anywhere else.
This module imports no torch, so the config can ask which names exist.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torch import nn

    from ..config import PretrainConfig

BUILTIN_MODULES = ("core.ssl.methods",)  # imported on the first question: they register SimCLR and MoCo v2
PLUGIN_PREFIX = "method_"  # and every core/ssl/method_*.py: a new method is one such file (and its test)
PLUGIN_PACKAGE = ("core.ssl", Path(__file__).parent)  # where method_*.py files are looked for


class Step(Protocol):
    """A method's training step: ``loss(views, ids, distributed, extra, step) -> StepLoss`` and
    ``after_step(gather)`` (e.g. a queue update after the optimizer step)."""

    def loss(self, views: Any, ids: Any, distributed: bool, extra: Any = None, step: int = 0) -> Any: ...
    def after_step(self, gather: Any) -> None: ...


class Method:
    """What the engine asks of a contrastive method. Subclass it, set ``name`` and ``label``, override what differs
    from the defaults (a SimCLR-like method: both views through one network, every other row a negative)."""

    name: str = ""
    label: str = ""  # how tables and pages name it, e.g. "MoCo v2"
    queue: bool = False  # negatives are a queue of past keys (the flags' candidates are the queue's tiles)

    def build_model(self, model_cfg: Any, bands: Any = None) -> "nn.Module":
        raise NotImplementedError

    def step(self, cfg: "PretrainConfig", model: "nn.Module", net: "nn.Module", rank: int, world: int,
             gather: Any, compile_loss: bool) -> Step:
        raise NotImplementedError

    def check(self, cfg: "PretrainConfig") -> None:
        """Refuse (ValueError naming the field) a config this method cannot train with; called at load."""

    def negatives(self, cfg: "PretrainConfig") -> tuple[int, str]:
        """How many negatives an anchor has, and the setting that says so (for the refusals that need it)."""
        return 2 * cfg.train.batch_size - 2, "2 x train.batch_size - 2"

    def loss_rows(self, local_batch: int) -> int:
        """Rows of this rank's loss (the flags' anchors) for ``local_batch`` images."""
        return 2 * local_batch

    def batchnorm(self, model: "nn.Module", cfg: "PretrainConfig", world: int, local_batch: int,
                  sync: bool) -> tuple["nn.Module", dict[str, Any]]:
        """The model with this method's BatchNorm (``sync``: several GPU ranks, where the default shares statistics
        over them), and what the run card says about it."""
        if sync:
            from torch import nn

            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model, {}


_METHODS: dict[str, Method] = {}
_builtins_loaded = False


def register(method: Method) -> Method:
    """Make ``method`` a value of ``method`` everywhere; a name taken by another method is an error."""
    if not method.name or not method.name.isidentifier():
        raise ValueError(f"a method needs a name that is an identifier, got {method.name!r}")
    known = _METHODS.get(method.name)
    if known is not None and type(known) is not type(method):
        raise ValueError(f"method {method.name!r} is already registered ({type(known).__name__})")
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (a test's plug-in, once the test is done)."""
    _METHODS.pop(name, None)


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        package, folder = PLUGIN_PACKAGE
        found = [f"{package}.{p.stem}" for p in sorted(folder.glob(f"{PLUGIN_PREFIX}*.py"))]
        for module in (*BUILTIN_MODULES, *found):
            importlib.import_module(module)


def method_names() -> list[str]:
    _load_builtins()
    return list(_METHODS)


def get_method(name: str) -> Method:
    _load_builtins()
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(_METHODS)}") from None


def method_label(name: str) -> str:
    """How tables and pages name a method (its own name when it is not registered, e.g. in an old run)."""
    try:
        return get_method(name).label or name
    except ValueError:
        return name
