"""Loading a config: YAML (safe), dotted ``key=value`` overrides, validation whose one line names the field, and
writing a config back as YAML."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..repo import REPO_ROOT
from ..store.file_versions import load_yaml  # bounded: no aliases, 1 MiB, 32 levels
from .base import ConfigError
from .pretrain import PretrainConfig


def _parse_value(text: str) -> Any:
    """Read an override value the way YAML would (numbers, booleans, null), strings otherwise."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (in place) and return it. ``key+=[x, y]`` extends a list
    setting instead of replacing it (e.g. a comparison's ``pretrain_overrides``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. loss.alpha=0.9")
        key, value = item.split("=", 1)
        extend = key.endswith("+")
        parts = key.strip().rstrip("+").split(".")
        if not all(p.strip() for p in parts):  # "=5" or "loss..alpha=1" named no field ("config: unknown setting")
            raise ConfigError(f"override {item!r}: the key before '=' names no setting, e.g. loss.alpha=0.9")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part} is not a section")
            node = child
        parsed = _parse_value(value)
        if extend:
            current = node.get(parts[-1]) or []
            if not isinstance(current, list):
                raise ConfigError(f"override {key}: {'.'.join(parts)} is not a list, so it cannot be extended")
            parsed = [*current, *(parsed if isinstance(parsed, list) else [parsed])]
        node[parts[-1]] = parsed
    _length_from_epochs(raw, overrides)
    return raw


def _length_from_epochs(raw: dict[str, Any], overrides: list[str]) -> None:
    """``train.epochs=N`` asks for N epochs: the preset's ``train.max_steps``, which would win over it, is dropped
    (it was kept, and the run silently took the preset's length), unless an override gives both."""
    keys = {item.split("=", 1)[0].strip() for item in overrides if "=" in item}
    train = raw.get("train")
    if "train.epochs" in keys and "train.max_steps" not in keys and isinstance(train, dict) \
            and train.get("epochs") is not None and train.get("max_steps") is not None:
        train["max_steps"] = None


def _problem(error: dict[str, Any], model: type[BaseModel] | None = None) -> tuple[str, str]:
    field = ".".join(str(p) for p in error["loc"])
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = "unknown setting" + _did_you_mean(model, error["loc"])
    if error["type"] == "literal_error":
        msg = f"{msg}, got {error.get('input')!r}"
    named = re.match(rf"{re.escape(field)}\.[a-z_]+\b" if field else r"[a-z_]+\.[a-z_]+\b", msg)
    if named:  # a section's check that names its field ("data.tile_overlap must be ..."): that field, said once
        field = named.group(0)
    return field, msg


def _did_you_mean(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """The setting of that section whose name is closest to a misspelt one (``train.max_step``), if one is close."""
    import difflib

    section: Any = model
    for part in loc[:-1]:
        info = getattr(section, "model_fields", {}).get(str(part))
        section = getattr(info, "annotation", None)
    names = list(getattr(section, "model_fields", {}) or [])
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.75)
    if close:
        return f" (did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?)"
    if len(loc) == 1:  # a section's setting given without its section: max_steps=5 for train.max_steps=5
        homes = [f"{name}.{loc[0]}" for name, info in getattr(model, "model_fields", {}).items()
                 if str(loc[0]) in (getattr(info.annotation, "model_fields", None) or {})]
        if homes:
            return f" (did you mean {' or '.join(homes)}?)"
    return ""


def _format_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Every wrong setting with what is wrong with it (up to 5; a review fixed a file of three typos one run at a
    time: the others were named without their "did you mean" or their allowed values)."""
    said = [msg if field and msg.startswith(field) else f"{field or 'config'}: {msg}"
            for field, msg in (_problem(e, model) for e in err.errors())]
    rest = f"; and {len(said) - 5} more" if len(said) > 5 else ""
    return "; ".join(said[:5]) + rest


def validate_config(raw: dict[str, Any], model: type[BaseModel] = PretrainConfig) -> Any:
    """Validate a nested dict; raise ConfigError with a one-line message that names the (first) field, and every
    wrong field in ``problems``."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, model), [_problem(e, model) for e in err.errors()]) from None


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None,
                model: type[BaseModel] = PretrainConfig) -> Any:
    """Load a YAML config file (or the defaults when path is None), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file() and not p.is_absolute() and (REPO_ROOT / p).is_file():
            p = REPO_ROOT / p  # a preset named as in the README (configs/...) from any folder
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = load_yaml(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {p} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
        except yaml.YAMLError as err:
            first = " ".join(str(err).split())
            raise ConfigError(f"config file {p} is not valid YAML: {first}") from None
        except OSError as err:
            raise ConfigError(f"config file {p} cannot be read: {err.strerror or err}") from None
        if raw is None:
            raise ConfigError(f"config file {p} is empty; start from one of configs/*.yaml")
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {p} must hold a mapping of settings")
    _right_command(raw, model)  # the file's own settings: an override (train.max_steps=10 to a probe) is a slip
    apply_overrides(raw, overrides or [])
    return validate_config(raw, model)


# settings only the other kind of config has, what that kind is, and the command that reads it
_OTHER_KIND = {"PretrainConfig": ((("model", "arch"), ("data", "crop_size"), ("data", "label_fraction")),
                                  "a fine-tuning config", "core.finetune"),
               "FinetuneConfig": ((("method",), ("loss",), ("model", "proj_dim"), ("model", "proj_hidden")),
                                  "a pretraining config", "core.pretrain"),
               "ProbeConfig": ((("method",), ("loss",), ("model", "proj_dim"), ("model", "proj_hidden")),
                               "a pretraining config", "core.pretrain")}
# a fine-tuning config given to the probe (the probe has no architecture, steps or protocol)
_FINETUNE_MARKERS = (("model", "arch"), ("train", "max_steps"), ("train", "protocol"))


def _right_command(raw: dict[str, Any], model: type[BaseModel]) -> None:
    """A pretraining config given to fine-tuning (or the reverse) is named as such, not as "model.arch: unknown
    setting"."""
    found = _OTHER_KIND.get(model.__name__)
    if found is None:
        return
    if "pretrain_config" in raw:
        raise ConfigError("this is a comparison config (pretrain_config is one of its settings): run it with "
                          "python -m core.compare")
    if model.__name__ == "ProbeConfig":
        for section, key in _FINETUNE_MARKERS:
            if isinstance(raw.get(section), dict) and key in raw[section] and not {"method", "loss"} & set(raw):
                raise ConfigError(f"this is a fine-tuning config ({section}.{key} is one of its settings): run it "
                                  "with python -m core.finetune, or probe with a probe preset (configs/probe_*.yaml)")
    elif isinstance(raw.get("train"), dict) and "label_stride" in raw["train"]:
        raise ConfigError("this is a linear-probe config (train.label_stride is one of its settings): run it with "
                          "python -m core.probe")
    markers, what, command = found
    for path in markers:
        node: Any = raw
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise ConfigError(f"this is {what} ({'.'.join(path)} is one of its settings): run it with "
                              f"python -m {command}")


def config_to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
