"""``python -m core.probe``: open, resume or create a probe's run folder, probe it (``ProbeTrainer``) and print its
test scores (the method and its records: ``core.seg.probe``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli_args import parse_run_args, probe_parser
from ..config import ConfigError, ProbeConfig, apply_overrides, config_to_yaml, load_config, validate_config
from ..console import say
from ..phases import load_words
from ..store.lifecycle import prepared_run, train_from_cli
from ..store.out_target import check_out_file
from ..store.resume import open_for_resume, resume_config
from ..store.run_lock import RunBusyError, lock_run
from ..store.runs import atomic_write_bytes, atomic_write_json, create_run, open_run_arg
from .probe import RESULT, ProbeTrainer
from .score_lines import baseline_line, score_lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_run_args(probe_parser(), argv)


def start(args: argparse.Namespace, env: Any = None) -> ProbeTrainer:  # env: one process, no ranks
    """The probe of a launcher-made or a resumed run folder (``train_from_cli``'s start)."""
    if args.out:  # before the probe, not after it (a review's folder ended a finished probe in a traceback)
        check_out_file(args.out)
    if args.resume:  # the settings its result was made with stay (a review's lr=0.5 rescored a run saying 0.01)
        cfg, changed = resume_config(args.resume, args.overrides, lambda raw: validate_config(raw, ProbeConfig),
                                     kind="probe")
        if open_run_arg(args.resume).status().get("state") == "completed" and not changed:  # before any truncation
            raise ConfigError(f"the probe {Path(args.resume).name} is complete (its scores: {RESULT}); a resume that "
                              "changes what a resume may (its length, test window, data folder, device) probes it "
                              "again, other settings are a new probe (--config)")
        run, _ = open_for_resume(args.resume)
        trainer = ProbeTrainer(cfg, run, progress=not args.no_progress)  # its data and weights read: then the config
        for change in changed:
            run.log(f"resumed with {change}")
        atomic_write_bytes(run.path / "config.yaml", config_to_yaml(cfg).encode())  # what the new result is of
        return trainer
    if args.run_dir:
        run = prepared_run(args.run_dir)
        if run.metrics() or (run.path / RESULT).exists():  # left as it is (an early error would mark it failed)
            raise RunBusyError(f"run {run.path} has already been probed; run it again with --resume")
        lock_run(run)
        return ProbeTrainer(validate_config(apply_overrides(run.config(), args.overrides), ProbeConfig), run,
                            progress=not args.no_progress)
    # a new probe gets its folder as fine-tuning does (it was only printed): the Runs page and `runs` list it
    if not args.config and not args.overrides:
        raise ConfigError("give --config FILE (see configs/probe_*.yaml), --run-dir RUN_DIR or --resume RUN_DIR")
    cfg = load_config(args.config, args.overrides, ProbeConfig)
    trainer = ProbeTrainer(cfg, None, progress=not args.no_progress)  # data first: a wrong set makes no folder
    trainer.run = create_run(cfg.name or "probe", config_to_yaml(cfg), Path(args.runs_root) if args.runs_root else None,
                             kind="probe")
    lock_run(trainer.run)
    return trainer


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    code, trainer = train_from_cli(argv, lambda _argv: args, start, "the probe")
    result = trainer.run.read_json(RESULT) if trainer is not None else None
    if result is not None:
        seconds = result.get("seconds") or {}
        # the scenes by name, and the warning's verdict on the line people copy (a review: the leak warning stood
        # above, the score line alone read as an unseen score)
        data = trainer.cfg.data
        say("\n".join(score_lines(result, data.test_scenes, data.split_unit, after=(
            f"  ({seconds.get('total', 0):.0f} s: features {seconds.get('features', 0):.0f}, head "
            f"{seconds.get('head', 0):.0f}, test {seconds.get('evaluation', 0):.0f}; {load_words()})"))))
        if (line := baseline_line(trainer.run, "probe")) is not None:
            say(line)
        if args.out:
            atomic_write_json(Path(args.out), result)
    return code
