"""The paper's comparison, with the statistics a reviewer asks for: does FALSE improve its base method?

    python -m core.compare --config configs/compare_dglc_cpu.yaml [--out docs/comparison_dglc.md]
    python -m core.compare --resume RUN_DIR        # continue a stopped comparison; finished units are kept
    python -m core.compare --config ... --jobs 2   # two units at once, each in its own process (core.seg.unit_jobs)

Crosses methods x pretraining seeds x evaluation seeds. Every method is pretrained once per pretraining seed (the
same seed gives SimCLR and SimCLR+FALSE the same start, batches and augmentations), then evaluated on the same
labeled split by ``eval: probe`` (a linear probe of the frozen encoder, :mod:`core.seg.probe`) or ``eval: finetune``
(the fine-tuning preset, e.g. the paper's frozen DeepLabV3+ protocol), once per evaluation seed. Test scores are
over whole held-out scenes. For every FALSE variant against its base method the table gives the mean paired
difference with a 95 % t interval over pretraining seeds and a plain verdict ("within noise" when the interval
holds 0), the scenes and tiles of every split, and the run writes JSON, CSV and Markdown.

Pretraining reads only the scenes of its ``data.pretrain_splits`` and, when it uses the evaluation's data set, its
split settings are set to the evaluation's: test scenes never reach an encoder (checked for every run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

from ..cli_args import compare_parser, parse_run_args
from ..console import count, say
from ..config import ConfigError, config_to_yaml, load_config, validate_config
from ..data import DataError
from ..host_memory import keep_freed_host_memory
from ..phases import load_words, report_phases
from ..store.lifecycle import StopFlag, phase_listener, plain_warnings, prepared_run, record_early_failure
from ..store.runs import (NotARunError, Run, atomic_write_bytes, atomic_write_json, create_run,
                          open_run_arg, runs_root)
from ..store.resume import ResumeRefused, refuse_other_kind
from ..store.run_lock import RunBusyError, lock_run, unlock_run
from .compare_config import (RANDOM_SEED_STRIDE, CompareConfig, band_label, band_overrides,  # noqa: F401 (re-exported)
                             check_presets, eval_config, pretrain_config, split_overrides, split_variant)
from .compare_methods import METHODS, BASES, method_overrides, unknown_method_message  # noqa: F401 (re-exported)
from .compare_report import (calibrations, check_out, hardly_treated, pretrain_summary, split_facts, summarise,
                             to_csv, to_markdown, write_out)
from .compare_units import CompareError, Units, check_no_leak, reused_run  # noqa: F401 (re-exported)


class Comparison:
    """Runs the units of a comparison in an order that completes whole pretraining seeds first."""

    def __init__(self, cfg: CompareConfig, out: Run, root: Path, log: Any, stop: StopFlag | None = None) -> None:
        self.cfg, self.out, self.root, self.log = cfg, out, root, log
        self.stop = stop or StopFlag()  # checked at every unit and step: a stop is never lost, even mid-finaliser
        self.units = Units(out)
        probe0 = eval_config(cfg, cfg.variants()[0], cfg.pretrain_seeds[0], cfg.seeds[0], None)
        self.eval_data = probe0.data
        self.extra = split_overrides(cfg, load_config(cfg.pretrain_config, cfg.pretrain_overrides), probe0)
        self.splits: dict[str, Any] = {}  # band set label -> the evaluation's splits read with those bands
        self.jobs = 1
        if cfg.jobs > 1:
            from .unit_jobs import cap_jobs

            self.jobs = cap_jobs(cfg.jobs, cfg.units_per_gpu, log)

    @property
    def total(self) -> int:
        variants = self.cfg.variants()
        pre = sum(split_variant(m)[0] != "random" for m in variants) * len(self.cfg.pretrain_seeds)
        return pre + len(variants) * len(self.cfg.pretrain_seeds) * len(self.cfg.seeds)

    def _progress(self) -> None:
        self.out.write_status(step=len(self.units.done), total_steps=self.total)

    def eval_splits(self, variant: str | None = None) -> Any:
        """The evaluation's splits, read with the band set of ``variant`` (the first band set when None)."""
        key = split_variant(variant)[1] or "" if variant is not None else split_variant(self.cfg.variants()[0])[1] or ""
        if key not in self.splits:
            from ..data.labeled import build_seg_splits

            data = self.eval_data if variant is None else \
                eval_config(self.cfg, variant, self.cfg.pretrain_seeds[0], self.cfg.seeds[0], None).data
            self.splits[key] = build_seg_splits(data, progress=True)
        return self.splits[key]

    def pretrain(self, method: str, pseed: int) -> Path | None:
        if split_variant(method)[0] == "random":
            return None
        done = self.units.get("pretrain", method, pseed)
        if done:
            return Path(done["run"])
        self.stop.check()
        from .unit_inline import pretrain_unit

        path = reused_run(self.cfg, method, pseed)
        if path is None:
            key = ("pretrain", method, pseed, None)
            run = pretrain_unit(pretrain_config(self.cfg, method, pseed, self.extra), self.root,
                                self.units.cut_short(key), partial(self.units.mark_started, key), self.log,
                                f"{method} p{pseed}", self.stop)
            if run is None:
                self.stop.check()
                raise CompareError(f"{method} p{pseed}: pretraining did not complete")
            path = run.path
        else:
            self.log(f"{method} p{pseed}: reusing {path}")
        return self._pretrained(method, pseed, path)

    def _pretrained(self, method: str, pseed: int, path: Path) -> Path:
        check_no_leak(path, self.eval_splits().scenes.get("test", []), method)
        self.units.add({"kind": "pretrain", "method": method, "pretrain_seed": pseed, "seed": None, "run": str(path)})
        self._progress()
        return path

    def encoder(self, method: str, pseed: int) -> Path | None:
        """The encoder a recorded pretraining unit made (None for a random init)."""
        done = self.units.get("pretrain", method, pseed)
        return None if done is None else Path(done["run"]) / "checkpoints" / "encoder.safetensors"

    def pending(self) -> list[Any]:
        """The units not recorded yet as ``unit_jobs.UnitJob``s, in the one-at-a-time path's order; an evaluation
        after its encoder's pretraining unit. A probe's run folder goes inside the comparison's (``probe_runs/``):
        its record is kept in ``probes/`` as before, and the runs list is not filled with probes."""
        from .unit_jobs import UnitJob

        kind = "probe" if self.cfg.eval == "probe" else "finetune"
        eval_root = self.out.path / "probe_runs" if kind == "probe" else self.root
        units = []
        for pseed in self.cfg.pretrain_seeds:
            for m in self.cfg.variants():
                pre = None
                if split_variant(m)[0] != "random" and not self.units.get("pretrain", m, pseed):
                    pre = ("pretrain", m, pseed, None)
                    units.append(UnitJob(pre, "pretrain", f"{m} p{pseed}",
                                         partial(pretrain_config, self.cfg, m, pseed, self.extra), self.root,
                                         resume=self.units.cut_short(pre)))
                units += [UnitJob(("eval", m, pseed, s), kind, f"{m} p{pseed} s{s}", partial(self._eval_config, m,
                                  pseed, s), eval_root, after=pre, resume=self.units.cut_short(("eval", m, pseed, s)))
                          for s in self.cfg.seeds if not self.units.get("eval", m, pseed, s)]
        return units

    def _eval_config(self, method: str, pseed: int, seed: int) -> Any:
        return eval_config(self.cfg, method, pseed, seed, self.encoder(method, pseed))

    def at_once(self) -> None:
        """Every unit not done yet, ``jobs`` at a time in their own processes (``unit_jobs``): pretraining units, and
        each evaluation as soon as its encoder is recorded; each recorded as the one-at-a-time path records it."""
        from .unit_jobs import UnitFailed, run_at_once

        for pseed in self.cfg.pretrain_seeds:  # a reused run is recorded here: nothing to run for it
            for method in self.cfg.variants():
                if reused_run(self.cfg, method, pseed) is not None:
                    self.pretrain(method, pseed)
        pending = self.pending()
        if not pending:
            return
        running = run_at_once(pending, self.jobs, self.log, check=self.stop.check,
                              started=lambda unit, run: self.units.mark_started(unit.key, run.path))
        try:
            for unit, run in running:
                _, method, pseed, seed = unit.key
                if seed is None:
                    self._pretrained(method, pseed, run.path)
                    continue
                record = run.read_json("test_metrics.json")
                if record is None:
                    raise CompareError(f"{unit.label}: {run.path.name} completed without test_metrics.json")
                self._evaluated(method, pseed, seed, self.encoder(method, pseed), record, run.path)
        except UnitFailed as err:
            raise CompareError(str(err)) from None
        finally:
            running.close()  # at once, not when the traceback lets go: the units still running are stopped

    def evaluate(self, method: str, pseed: int, seed: int, encoder: Path | None) -> None:
        if self.units.get("eval", method, pseed, seed):
            return
        self.stop.check()
        ecfg = eval_config(self.cfg, method, pseed, seed, encoder)
        if self.cfg.eval == "probe":
            from .probe import run_probe

            result = run_probe(ecfg, splits=self.eval_splits(method), progress=True)
            self._evaluated(method, pseed, seed, encoder, result.record(ecfg))
        else:
            from .unit_inline import finetune_unit

            key = ("eval", method, pseed, seed)
            run = finetune_unit(ecfg, self.root, self.units.cut_short(key), partial(self.units.mark_started, key),
                                self.log, f"{method} p{pseed} s{seed}", self.stop)
            self._evaluated(method, pseed, seed, encoder, json.loads((run.path / "test_metrics.json").read_text()),
                            run.path)

    def _evaluated(self, method: str, pseed: int, seed: int, encoder: Path | None, record: dict[str, Any],
                   run: Path | None = None) -> None:
        """An evaluation's record into ``units.jsonl``: a probe's (wherever it ran) kept in ``probes/``, a
        fine-tuning's in its run folder."""
        if self.cfg.eval == "probe":
            record = {k: v for k, v in record.items() if k != "class_table"}  # a probe run folder's extra for the app
            where = self.out.path / "probes" / f"{method}-p{pseed}-s{seed}.json"
            atomic_write_json(where, record)
        else:
            where = run if run is not None else self.root  # a fine-tuning's record is its run folder
        unit = {"kind": "eval", "method": method, "pretrain_seed": pseed, "seed": seed, "miou": record["miou"],
                "oa": record["oa"], "kappa": record["kappa"], "iou": record.get("iou"), "split": record["split"],
                "evaluation": record.get("evaluation", "tiles"), "record": str(where),
                "pretrain_run": str(encoder.parent.parent) if encoder is not None else None}
        self.units.add(unit)
        self._progress()
        self.log(f"{method} p{pseed} s{seed}: mIoU {unit['miou']:.4f} OA {unit['oa']:.4f} ({where.name})")

    def record_completed(self) -> None:
        """Units whose run completed but that a kill left unrecorded: recorded from their folders, not trained again
        (the one-at-a-time path's order, so an evaluation finds its encoder)."""
        for pseed in self.cfg.pretrain_seeds:
            for m in self.cfg.variants():
                key = ("pretrain", m, pseed, None)
                if split_variant(m)[0] != "random" and not self.units.get(*key):
                    path = self.units.completed(key, pretrain_config(self.cfg, m, pseed, self.extra))
                    if path is not None:
                        self.log(f"{m} p{pseed}: pretraining had completed in {path.name}; recorded from there")
                        self._pretrained(m, pseed, path)
                for s in self.cfg.seeds:
                    key = ("eval", m, pseed, s)
                    path = None if self.units.get(*key) else self.units.completed(key, self._eval_config(m, pseed, s))
                    if path is not None:
                        self.log(f"{m} p{pseed} s{s}: evaluation had completed in {path.name}; recorded from there")
                        record = json.loads((path / "test_metrics.json").read_text())
                        self._evaluated(m, pseed, s, self.encoder(m, pseed), record, path)

    def run_all(self) -> list[dict[str, Any]]:
        """Every unit; the evaluations' records in the one order of the one-at-a-time path (pretraining seed,
        method, seed), whatever order they finished in: the table's sums are then the same bits."""
        self._progress()
        self.record_completed()
        if self.jobs > 1:
            self.at_once()
        for pseed in self.cfg.pretrain_seeds:
            for method in self.cfg.variants():
                path = self.pretrain(method, pseed)
                encoder = path / "checkpoints" / "encoder.safetensors" if path is not None else None
                for seed in self.cfg.seeds:
                    self.evaluate(method, pseed, seed, encoder)
        return [self.units.get("eval", m, p, s) for p in self.cfg.pretrain_seeds for m in self.cfg.variants()
                for s in self.cfg.seeds]


# ------------------------------------------------------------------------------------------------ CLI
FIRST_COMMAND = "command.json"  # the command line that started the comparison, and its --out


def _load(args: argparse.Namespace) -> tuple[CompareConfig, Run, Path]:
    if args.resume:
        if args.overrides:  # they were dropped without a word: config.yaml and the log said nothing of them
            raise ResumeRefused(f"{args.overrides[0].split('=', 1)[0]}: a resumed comparison continues with its "
                                "own config.yaml (its finished units are kept), so key=value overrides are not "
                                "applied; start a new comparison to change its settings")
        out = open_run_arg(args.resume, Path(args.runs_root) if args.runs_root else None)  # a folder or a name
        refuse_other_kind(out, "compare")
        lock_run(out)  # one line (RunBusyError) when another process still writes it; a dead one holds no lock
        cfg = validate_config(out.config(), CompareConfig)
        # resumed: a result written before it is shown as such while it runs (run_summary)
        out.write_status(state="running", pid=os.getpid(), kind="compare", error=None, ended=None, resumed=time.time())
        out.log("resumed; finished units are kept")
        return cfg, out, out.path.parent
    if args.run_dir:
        out = prepared_run(args.run_dir)
        lock_run(out)
        cfg = validate_config(out.config(), CompareConfig)
        out.write_status(state="running", pid=os.getpid(), kind="compare")
        return cfg, out, out.path.parent
    if not args.config:
        raise ConfigError("give --config FILE (see configs/compare_*.yaml) or --resume RUN_DIR")
    try:
        jobs = [f"jobs={args.jobs}"] if args.jobs is not None else []  # kept in config.yaml: a Resume runs as many
        cfg = load_config(args.config, [*args.overrides, *jobs], CompareConfig)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_presets(cfg)
    root = Path(args.runs_root) if args.runs_root else runs_root()
    out = create_run(cfg.name, config_to_yaml(cfg), root, kind="compare", state="running", pid=os.getpid())
    lock_run(out)
    return cfg, out, root


def _command(args: Any, argv: list[str] | None, out_run: Any) -> str:
    """The command a report names. A comparison the app launched ran as ``--run-dir FOLDER`` (the launcher's form,
    which writes into that folder and says none of its settings): its config file, which holds them all, stands
    for it, so the line reproduces the comparison elsewhere."""
    given = argv if argv is not None else sys.argv[1:]
    if args.run_dir and not args.config:
        return " ".join(["python -m core.compare", "--config", str(out_run.path / "config.yaml"),
                         *([f"--out {args.out}"] if args.out else [])])
    return " ".join(["python -m core.compare", *given])


@plain_warnings()  # a unit's warnings as one line each, as the trainers' own commands print them
def main(argv: list[str] | None = None) -> int:
    stop = StopFlag().install()  # a Stop while the run is being opened is remembered, not fatal
    args = parse_run_args(compare_parser(), argv)
    try:
        if args.jobs is not None and args.jobs < 1:
            raise ConfigError(f"--jobs: {args.jobs}; give 1 or more")
        check_out(args.out)
        cfg, out_run, root = _load(args)
        if args.jobs is not None:  # this process's: a resume without it goes back to the config's
            cfg = cfg.model_copy(update={"jobs": args.jobs})
        if args.run_dir or args.resume:
            check_presets(cfg)
    except RunBusyError as err:  # another process writes this comparison: touch nothing of it
        stop.restore()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ConfigError, DataError, NotARunError, FileNotFoundError, ValueError) as err:
        if args.run_dir:
            record_early_failure(args, err)
        stop.restore()
        print(f"error: {err}", file=sys.stderr)
        return 2
    t0 = time.time()
    if not args.resume:  # what a resume needs to finish the job as asked: the --out file, the command for the report
        atomic_write_json(out_run.path / FIRST_COMMAND, {
            "command": _command(args, argv, out_run),
            "out": str(Path(args.out).resolve()) if args.out else None})

    def log(msg: str) -> None:
        out_run.log(msg)
        say(msg)  # a closed pipe (`| head`) must not end the comparison

    comparison = None
    try:
        stop.interrupt()  # the workbench's Stop (now, or already during loading): a recorded stop, not a death
        with report_phases(phase_listener(out_run.path)):  # generating its data, a unit's features: on its page
            comparison = Comparison(cfg, out_run, root, log, stop)
            facts = split_facts(comparison.eval_splits(), comparison.eval_data)
            log(f"evaluation data {facts['data']}: " + ", ".join(f"{k} {count(facts[k]['scenes'], 'scene')} / "
                                                                 f"{count(facts[k]['tiles'], 'tile')}" for k in
                                                                 ("train", "val", "test")))
            if comparison.extra:
                log("pretraining splits its scenes as the evaluation does: " + " ".join(comparison.extra))
            rows = comparison.run_all()
    except (ConfigError, DataError, NotARunError, CompareError) as err:
        out_run.write_status(state="failed", error=str(err), ended=time.time())
        out_run.log(f"failed: {err}")
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out_run.write_status(state="stopped", ended=time.time())
        probe = " (a probe, which keeps no folder one at a time, starts again)"
        cut = probe if cfg.eval == "probe" and (comparison is None or comparison.jobs == 1) else ""  # jobs capped to 1
        log(f"stopped; finished units are kept, a unit cut short continues in its folder from its checkpoint{cut}; "
            f"continue with: python -m core.compare --resume {out_run.path}")
        unlock_run(out_run)
        return 130
    except BaseException as err:
        out_run.write_status(state="failed", error=f"{type(err).__name__}: {err}", ended=time.time())
        out_run.log("failed:\n" + traceback.format_exc())
        unlock_run(out_run)
        raise
    finally:
        stop.restore()
    done = list(comparison.units.done.values())
    summary, diffs = summarise(rows, cfg.variants(), calibrations(done), hardly_treated(done))
    pre = pretrain_summary(comparison.units)
    minutes = (time.time() - t0) / 60
    command = _command(args, argv, out_run)
    first = out_run.read_json(FIRST_COMMAND) or {}
    resumed = None
    if args.resume and first.get("command"):  # the report names what made it, not only the resume
        command, resumed = first["command"], command
    out_path = args.out or first.get("out")  # a resume writes the --out file the first command asked for
    earlier = out_run.read_json("comparison.json") if args.resume else None
    if earlier and comparison.units.added == 0:  # a finished comparison drawn again: its own time and command
        minutes, command = earlier.get("minutes", minutes), earlier.get("command", command)
        resumed = earlier.get("resumed_with")
        how_long = f"{minutes:.1f} min on this machine"
    else:
        how_long = f"{minutes:.1f} min on this machine{' since the last resume' if args.resume else ''}, {load_words()}"
    md = to_markdown(cfg, summary, diffs, facts, pre, rows)
    md += f"\nCommand: `{command}`" + (f", resumed with `{resumed}`" if resumed else "") + f" ({how_long}).\n"
    result = {"name": cfg.name, "eval": cfg.eval, "config": cfg.model_dump(mode="json"), "splits": facts,
              "pretraining": pre, "methods": summary, "differences": diffs, "units": rows, "minutes": round(minutes, 2),
              "command": command, **({"resumed_with": resumed} if resumed else {})}
    atomic_write_bytes(out_run.path / "results.csv", to_csv(rows).encode())
    atomic_write_bytes(out_run.path / "summary.csv", to_csv(summary).encode())
    atomic_write_json(out_run.path / "comparison.json", result)
    atomic_write_bytes(out_run.path / "table.md", md.encode())
    if out_path:
        write_out(Path(out_path), md, result, log, given=bool(args.out))
    elif args.resume and not first:
        log(f"no {FIRST_COMMAND} (a comparison started before resumes kept its --out): give --out again to write "
            "the table to a file")
    out_run.write_status(state="completed", ended=time.time(), kind="compare")
    unlock_run(out_run)
    say(md)
    return 0


if __name__ == "__main__":  # as the app's launcher starts it: a training process (core/host_memory.py)
    keep_freed_host_memory()
    sys.exit(main())
