"""``python -m core.finetune``: open, resume or create a fine-tuning run, train it (``FinetuneTrainer``) and print
its test scores (a comparison's unit does the same in its process: ``core.seg.unit_inline``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli_args import finetune_parser, parse_run_args
from ..console import say
from ..config import ConfigError, FinetuneConfig, apply_overrides, config_to_yaml, load_config, validate_config
from ..distributed import DistEnv, from_first
from ..host_memory import keep_freed_host_memory
from ..store.lifecycle import prepared_run, train_from_cli
from ..store.resume import open_for_resume, refuse_if_complete, resume_config
from ..store.run_lock import lock_run
from ..data.split_check import check_same_split
from ..store.runs import Run, atomic_write_bytes, atomic_write_json, create_run, read_json_file
from .finetune import FinetuneTrainer
from .score_lines import baseline_line, score_lines


SPLITS = "splits.json"  # a fine-tuning run's scenes per split, as it started


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_run_args(finetune_parser(), argv)


def start(args: argparse.Namespace, env: DistEnv | None = None) -> FinetuneTrainer:
    """The trainer of a resumed, a launcher-made or a new run (data built before a new folder is made), whose split
    is written down (``splits.json``: the scenes of each split, which a resume must find again)."""
    trainer = _trainer(args, env or DistEnv())
    if trainer.env.main and trainer.run is not None:
        atomic_write_json(trainer.run.path / SPLITS, {"split_scenes": trainer.splits.scenes})
    return trainer


def _trainer(args: argparse.Namespace, env: DistEnv) -> FinetuneTrainer:
    progress = not args.no_progress
    if args.resume:
        cfg, changed = resume_config(args.resume, args.overrides, lambda raw: validate_config(raw, FinetuneConfig),
                                     kind="finetune")
        run, ckpt = open_for_resume(args.resume)
        refuse_if_complete(run, cfg.train.max_steps)
        trainer = FinetuneTrainer(cfg, run, progress=progress, env=env)
        if cfg.train.max_steps is None:  # set by epochs: their steps are known now that the data is built
            refuse_if_complete(run, trainer.total_steps, cfg.train.epochs)
        if ckpt is not None:  # before the run is touched: its checkpoint learned these scenes
            check_same_split((read_json_file(run.path / SPLITS) or {}).get("split_scenes"), trainer.splits.scenes,
                             run.path / "config.yaml", cfg.data.split_unit)
        for change in changed if env.main else []:
            run.log(f"resumed with {change}")
        if changed and env.main:  # its length too: a later plain resume of the finished run trained on (a review)
            atomic_write_bytes(run.path / "config.yaml", config_to_yaml(cfg).encode())
        if ckpt is not None:
            trainer.restore(ckpt)
            if env.main:
                run.truncate_after(trainer.step)
                run.log(f"resumed from step {trainer.step}")
        return trainer
    if args.run_dir:
        run = prepared_run(args.run_dir)
        lock_run(run)
        cfg = validate_config(apply_overrides(run.config(), args.overrides), FinetuneConfig)
        return FinetuneTrainer(cfg, run, progress=progress, env=env)
    if not args.config and not args.overrides:
        raise ConfigError("give --config FILE (see configs/finetune_*.yaml) or --resume RUN_DIR")
    cfg = load_config(args.config, args.overrides, FinetuneConfig)
    trainer = FinetuneTrainer(cfg, None, progress=progress, env=env)
    run = None
    if env.main:
        run = create_run(cfg.name or f"finetune-{cfg.model.arch}", config_to_yaml(cfg),
                         Path(args.runs_root) if args.runs_root else None)
        lock_run(run)
    trainer.run = Run(Path(from_first(str(run.path) if run else None, env)))
    return trainer


def main(argv: list[str] | None = None) -> int:
    code, trainer = train_from_cli(argv, parse_args, start, "fine-tuning")
    if trainer is None:
        return code
    result = trainer.run.read_json("test_metrics.json")
    if result is not None and isinstance(result.get("miou"), (int, float)):
        data = trainer.cfg.data  # the scenes, the classes and whether unseen, as the probe prints them
        say("\n".join(score_lines(result, data.test_scenes, data.split_unit)))
        if (line := baseline_line(trainer.run, "finetune")) is not None:
            say(line)
    return code


if __name__ == "__main__":  # as the app's launcher starts it: a training process (core/host_memory.py)
    keep_freed_host_memory()
    sys.exit(main())
