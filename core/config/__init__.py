"""Validated configuration of every run: pretraining, fine-tuning, the linear probe (comparison: ``core.seg.compare``).

A config is loaded from YAML, patched with dotted ``key=value`` overrides from the command line, and validated
in one place, so that a bad value fails before any compute with one line that names the field. The sections live in
``base`` (shared), ``pretrain``, ``seg`` and ``loading``; this package is their one public face.
"""
from __future__ import annotations

from .base import ENCODERS, MAX_STEPS, RETIRED_KEYS, ConfigError, _Section, choices, distinct, held_out_scenes, total_steps
from .loading import apply_overrides, config_to_yaml, load_config, validate_config
from .pretrain import (PRETRAIN_DATASETS, SPLIT_NAMES, DataConfig, LossConfig, ModelConfig, PretrainConfig, TrainConfig,
                       upgrade_run_config)
from .seg import (SEG_DATASETS, FinetuneConfig, FinetuneTrainConfig, ProbeConfig, ProbeModelConfig, ProbeTrainConfig,
                  SegDataConfig, SegModelConfig)

__all__ = ["ENCODERS", "MAX_STEPS", "RETIRED_KEYS", "ConfigError", "_Section", "choices", "distinct", "held_out_scenes",
           "total_steps",
           "apply_overrides", "config_to_yaml", "load_config", "validate_config",
           "PRETRAIN_DATASETS", "SPLIT_NAMES", "DataConfig", "LossConfig", "ModelConfig", "PretrainConfig",
           "TrainConfig", "upgrade_run_config", "SEG_DATASETS", "FinetuneConfig", "FinetuneTrainConfig", "ProbeConfig",
           "ProbeModelConfig", "ProbeTrainConfig", "SegDataConfig", "SegModelConfig"]
