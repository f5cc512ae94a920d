"""What a comparison is made of: its config (``CompareConfig``) and the config of each of its units (a method's
pretraining, an evaluation), built the same way by the comparison, its launch form and its unit processes.

Why apart from ``core.seg.compare``: the Fine-tune page validates a comparison's presets without running one, and the
comparison's runner stays one file of running units.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import ConfigError, FinetuneConfig, PretrainConfig, ProbeConfig, _Section, distinct, load_config
from ..config.base import TrackerName
from ..data.seg_base import resolve_root
from .compare_methods import METHODS, method_overrides, unknown_method_message

RANDOM_SEED_STRIDE = 1000  # random init: the encoder of pretraining seed p, evaluation seed s is drawn from 1000 p + s


class CompareConfig(_Section):
    name: str = "compare"
    pretrain_config: str = Field(description="pretraining preset (YAML) shared by every method")
    pretrain_overrides: list[str] = []
    eval: Literal["finetune", "probe"] = Field("finetune", description="probe: linear probe; finetune: the preset")
    finetune_config: str | None = Field(None, description="fine-tuning preset (YAML), for eval: finetune")
    finetune_overrides: list[str] = []
    probe_config: str | None = Field(None, description="probe preset (YAML), for eval: probe")
    probe_overrides: list[str] = []
    methods: list[str] = list(METHODS)
    pretrain_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="at least 2, for an interval")
    seeds: list[int] = Field(default_factory=lambda: [0], description="evaluation (fine-tuning or probe) seeds")
    jobs: int = Field(1, ge=1, description="units run at once (pretraining, then each evaluation once its encoder "
                      "is recorded), each in its own process; capped to the cores, or GPUs x units_per_gpu (1: one "
                      "after the other in this process, every core each)")
    units_per_gpu: int = Field(1, ge=1, le=64, description="on CUDA, units at once on one GPU (jobs is capped to "
                               "GPUs x this)")
    reuse: dict[str, str] = Field(default_factory=dict,
                                  description="'method@seed' (or 'method' for the first seed) -> pretraining run")
    trackers: list[TrackerName] = Field(default_factory=list, description="every unit's train.trackers "
                                        "(tensorboard, mlflow)")
    mlflow_uri: str | None = Field(None, max_length=2000, description="every unit's train.mlflow_uri")
    bands: list[list[int | str] | None] = Field(
        default_factory=lambda: [None], description="band sets to compare, e.g. [[R, G, B], [R, G, B, NIR]]: every "
        "method is pretrained and evaluated on each; the first is the reference of the paired band differences")

    @field_validator("bands", mode="before")
    @classmethod
    def _band_sets(cls, v: Any) -> Any:
        from ..imaging.bands import check_request

        if not isinstance(v, list) or not v:
            raise ValueError("name at least one band set, e.g. [[R, G, B], [R, G, B, NIR]] (null: RGB)")
        sets = [check_request(b) for b in v]
        labels = [band_label(b) for b in sets]
        if len(set(labels)) != len(labels):
            raise ValueError(f"a band set is named twice: {labels}")
        return sets

    def variants(self) -> list[str]:
        """Every method on every band set: ``method`` alone for the default RGB rule only, else ``method@R+G+B+NIR``."""
        if self.bands == [None]:
            return list(self.methods)
        return [f"{m}@{band_label(b)}" for b in self.bands for m in self.methods]

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        for m in distinct(v, 1, "method"):
            if method_overrides(m) is None:
                raise ValueError(unknown_method_message(m))
        return v

    @field_validator("pretrain_seeds")
    @classmethod
    def _two_pretrain_seeds(cls, v: list[int]) -> list[int]:
        return distinct(v, 2, "pretraining seeds (a paired interval needs them; e.g. [0, 1, 2])")

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, v: list[int]) -> list[int]:
        return distinct(v, 1, "evaluation seed")

    @model_validator(mode="after")
    def _eval_preset(self) -> "CompareConfig":
        if self.eval == "finetune" and not self.finetune_config:
            raise ValueError("eval: finetune needs finetune_config, a fine-tuning preset")
        if self.eval == "probe" and not self.probe_config:
            raise ValueError("eval: probe needs probe_config, a probe preset (e.g. configs/probe_dglc_cpu.yaml)")
        return self


def band_label(bands: list[int | str] | None) -> str:
    """A band set as a unit's name holds it: ``R+G+B+NIR`` (``RGB`` for the default rule)."""
    return "RGB" if bands is None else "+".join(str(b) for b in bands)


def split_variant(variant: str) -> tuple[str, str | None]:
    """``method@bands`` -> (method, bands label); a plain method -> (method, None)."""
    method, _, bands = variant.partition("@")
    return method, bands or None


def band_overrides(cfg: CompareConfig, variant: str) -> list[str]:
    """The ``data.bands=[...]`` override of a variant's band set (none for the default rule)."""
    _, label = split_variant(variant)
    if label is None:
        return []
    bands = next(b for b in cfg.bands if band_label(b) == label)
    return [] if bands is None else ["data.bands=[" + ",".join(str(b) for b in bands) + "]"]



def tracker_overrides(cfg: CompareConfig) -> list[str]:
    """The comparison's trackers, handed to every unit."""
    out = [f"train.trackers=[{','.join(cfg.trackers)}]"] if cfg.trackers else []
    return out + ([f"train.mlflow_uri={cfg.mlflow_uri}"] if cfg.mlflow_uri else [])


def _run_name(variant: str) -> str:
    method, label = split_variant(variant)
    method = method.replace("+", "-")
    return method if label is None else f"{method}-{label.replace('+', '')}"


def eval_config(cfg: CompareConfig, method: str, pretrain_seed: int, seed: int, encoder: Path | None) -> Any:
    """The fine-tuning or probe config of one evaluation unit (``method``: a method or ``method@bands``)."""
    init = str(encoder) if encoder is not None else "random"
    run_seed = RANDOM_SEED_STRIDE * pretrain_seed + seed if encoder is None else seed
    common = [*band_overrides(cfg, method), *tracker_overrides(cfg), f"seed={run_seed}", f"model.init={init}",
              f"name={cfg.name}-{_run_name(method)}-p{pretrain_seed}-s{seed}"]
    if cfg.eval == "probe":
        return load_config(cfg.probe_config, [*cfg.probe_overrides, *common], ProbeConfig)
    return load_config(cfg.finetune_config, [*cfg.finetune_overrides, *common], FinetuneConfig)


def split_overrides(cfg: CompareConfig, pretrain: PretrainConfig, evaluation: Any) -> list[str]:
    """Pretraining on the evaluation's data set splits its scenes exactly as the evaluation does."""
    p, e = pretrain.data, evaluation.data
    same_root = p.root and e.root and resolve_root(p.root) == resolve_root(e.root)
    if p.name != e.name or (p.name != "synthetic" and not same_root):
        return []
    out = [f"data.seed={e.seed}", f"data.val_fraction={e.val_fraction}", f"data.test_fraction={e.test_fraction}"]
    if e.split_unit is not None and p.class_table:  # an image folder's scenes, kept together as the evaluation does
        out.append(f"data.split_unit={e.split_unit}")
    if p.name == "synthetic":
        out += [f"data.num_tiles={e.num_tiles}", f"data.tile_size={e.tile_size}"]
    return out


def pretrain_config(cfg: CompareConfig, method: str, pretrain_seed: int, extra: list[str]) -> PretrainConfig:
    base, _ = split_variant(method)
    return load_config(cfg.pretrain_config, [*cfg.pretrain_overrides, *extra, *(method_overrides(base) or []),
                                             *band_overrides(cfg, method), *tracker_overrides(cfg),
                                             f"seed={pretrain_seed}",
                                             f"name={cfg.name}-{_run_name(method)}-p{pretrain_seed}"])



def check_presets(cfg: CompareConfig) -> None:
    """Every config the comparison will build, validated before any compute; a variant without its base refused."""
    check_bases(cfg)
    for method in cfg.variants():
        if split_variant(method)[0] != "random":
            with _named("pretrain_config", "pretrain_overrides", method):
                pretrain_config(cfg, method, cfg.pretrain_seeds[0], [])
        evaluation = "probe" if cfg.eval == "probe" else "finetune"
        with _named(f"{evaluation}_config", f"{evaluation}_overrides", method):
            eval_config(cfg, method, cfg.pretrain_seeds[0], cfg.seeds[0], None)


def check_bases(cfg: CompareConfig) -> None:
    """A variant is read against its base (a bands comparison against its own first band set instead): a walkthrough
    ran [random, simclr_false_pa] to the end with no paired difference and no word why. Checked for a new comparison
    only, so that one made before the rule still resumes."""
    from .compare_report import base_of

    for m in cfg.methods if len(cfg.bands) == 1 else []:
        if (base := base_of(m)) is not None and base not in cfg.methods:
            raise ConfigError(f"methods: {m} is read against its base {base}, which is not among the methods: add "
                              f"{base} (without it the comparison gives no paired difference for it)")


@contextmanager
def _named(preset: str, overrides: str, method: str) -> Iterator[None]:
    """A unit's config error says where its setting came from: "train.bogus: unknown setting" named neither the
    comparison's ``pretrain_overrides`` nor the method."""
    try:
        yield
    except ConfigError as err:
        raise ConfigError(f"{err} (in the comparison's {preset} with its {overrides}, method {method})") from None
