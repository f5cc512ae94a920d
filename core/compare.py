"""The paper's comparison: does FALSE improve its base method's segmentation after fine-tuning?

    python -m core.compare --config configs/compare_cpu.yaml [--out docs/comparison_synthetic.md]

Pretrains (or reuses) SimCLR, SimCLR+FALSE, MoCo v2 and MoCo v2+FALSE with the same settings, fine-tunes each
(and a randomly initialised encoder) on the same labelled subset with several seeds, and writes a table of the mean
and standard deviation of mIoU, overall accuracy and kappa, with the FALSE gain over its base method.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from .config import (ConfigError, FinetuneConfig, PretrainConfig, _Section, config_to_yaml,
                     load_config)
from .data import DataError
from .finetune import run_finetune
from .pretrain import Trainer, prepared_run, record_early_failure
from .runs import NotARunError, atomic_write_bytes, create_run, open_run, runs_root


METHODS: dict[str, list[str]] = {
    "random": [],
    "simclr": ["method=simclr", "loss.name=info_nce"],
    "simclr_false": ["method=simclr", "loss.name=false"],
    "moco": ["method=moco", "loss.name=info_nce"],
    "moco_false": ["method=moco", "loss.name=false"],
}
BASE_OF = {"simclr_false": "simclr", "moco_false": "moco"}


class CompareConfig(_Section):
    name: str = "compare"
    pretrain_config: str = Field(description="pretraining preset (YAML) shared by every method")
    pretrain_overrides: list[str] = []
    finetune_config: str = Field(description="fine-tuning preset (YAML) shared by every method")
    finetune_overrides: list[str] = []
    methods: list[str] = list(METHODS)
    seeds: list[int] = [0, 1]
    reuse: dict[str, str] = Field(default_factory=dict, description="method -> existing pretraining run folder")

    def model_post_init(self, __context: Any) -> None:
        if not self.methods:
            raise ValueError("methods: pick at least one method")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"methods: unknown method {m!r}; choose from {', '.join(METHODS)}")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")


def _load_compare(path: str, overrides: list[str]) -> CompareConfig:
    try:
        return load_config(path, overrides, CompareConfig)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def pretrain_all(cfg: CompareConfig, root: Path, log) -> dict[str, Path | None]:
    """One pretraining run per method (or the reused one)."""
    encoders: dict[str, Path | None] = {}
    for method in cfg.methods:
        if method == "random":
            encoders[method] = None
            continue
        if method in cfg.reuse:
            encoders[method] = open_run(cfg.reuse[method]).path
            log(f"{method}: reusing {encoders[method]}")
            continue
        pcfg: PretrainConfig = load_config(cfg.pretrain_config, [*cfg.pretrain_overrides, *METHODS[method],
                                                                  f"name={cfg.name}-{method}"])
        trainer = Trainer(pcfg, None, progress=True)
        trainer.run = create_run(pcfg.name, config_to_yaml(pcfg), root)
        log(f"{method}: pretraining into {trainer.run.path}")
        if trainer.fit() != "completed":
            raise RuntimeError(f"{method}: pretraining did not complete")
        encoders[method] = trainer.run.path
    return encoders


def finetune_all(cfg: CompareConfig, encoders: dict[str, Path | None], root: Path, log) -> list[dict[str, Any]]:
    rows = []
    for method, enc in encoders.items():
        for seed in cfg.seeds:
            fcfg: FinetuneConfig = load_config(cfg.finetune_config, [
                *cfg.finetune_overrides, f"seed={seed}", f"model.init={enc if enc else 'random'}",
                f"name={cfg.name}-ft-{method}-s{seed}"], FinetuneConfig)
            run = run_finetune(fcfg, root, progress=True)
            scores = json.loads((run.path / "test_metrics.json").read_text())
            rows.append({"method": method, "seed": seed, "miou": scores["miou"], "oa": scores["oa"],
                         "kappa": scores["kappa"], "split": scores["split"], "run": str(run.path)})
            log(f"{method} seed {seed}: mIoU {scores['miou']:.4f} OA {scores['oa']:.4f} ({run.path.name})")
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation per method, and the FALSE gain (mIoU points) over its base method."""
    out = []
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    means = {}
    for method, rs in by_method.items():
        row: dict[str, Any] = {"method": method, "seeds": len(rs)}
        for key in ("miou", "oa", "kappa"):
            vals = [r[key] for r in rs]
            row[f"{key}_mean"] = statistics.fmean(vals)
            row[f"{key}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        means[method] = row["miou_mean"]
        out.append(row)
    for row in out:
        base = BASE_OF.get(row["method"])
        row["false_gain_miou_points"] = 100 * (row["miou_mean"] - means[base]) if base in means else None
    return out


def to_markdown(summary: list[dict[str, Any]], title: str) -> str:
    lines = [f"### {title}", "", "| method | seeds | mIoU (%) | OA (%) | kappa | FALSE gain (mIoU points) |",
             "|---|---|---|---|---|---|"]
    for r in summary:
        gain = "" if r["false_gain_miou_points"] is None else f"{r['false_gain_miou_points']:+.2f}"
        lines.append(f"| {r['method']} | {r['seeds']} | {100 * r['miou_mean']:.2f} ± {100 * r['miou_std']:.2f} | "
                     f"{100 * r['oa_mean']:.2f} ± {100 * r['oa_std']:.2f} | {r['kappa_mean']:.3f} ± "
                     f"{r['kappa_std']:.3f} | {gain} |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="comparison config (see configs/compare_cpu.yaml)")
    p.add_argument("--run-dir", metavar="RUN_DIR",
                   help="write into this run folder made by the workbench's launcher (its config.yaml is used)")
    p.add_argument("--out", help="also write the Markdown table (with the command) to this file")
    p.add_argument("--runs-root")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    try:
        if args.run_dir:
            out_run = prepared_run(args.run_dir)
            cfg = _load_compare(str(out_run.path / "config.yaml"), args.overrides)
            root = out_run.path.parent
            out_run.write_status(state="running", pid=os.getpid(), kind="compare")
        elif not args.config:
            raise ConfigError("give --config FILE (see configs/compare_cpu.yaml)")
        else:
            cfg = _load_compare(args.config, args.overrides)
            root = Path(args.runs_root) if args.runs_root else runs_root()
        load_config(cfg.pretrain_config, cfg.pretrain_overrides)
        load_config(cfg.finetune_config, cfg.finetune_overrides, FinetuneConfig)
        if not args.run_dir:
            out_run = create_run(cfg.name, config_to_yaml(cfg), root, kind="compare")
    except (ConfigError, DataError, NotARunError, FileNotFoundError) as err:
        record_early_failure(args, err)
        print(f"error: {err}", file=sys.stderr)
        return 2
    t0 = time.time()

    def log(msg: str) -> None:
        out_run.log(msg)
        print(msg, flush=True)

    previous = signal.signal(signal.SIGTERM, _interrupt)  # the workbench's Stop: a recorded stop, not a death
    try:
        encoders = pretrain_all(cfg, root, log)
        rows = finetune_all(cfg, encoders, root, log)
    except (ConfigError, DataError, NotARunError) as err:
        out_run.write_status(state="failed", error=str(err), ended=time.time())
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out_run.write_status(state="stopped", ended=time.time())
        log("stopped; finished pretraining runs can be reused with reuse: in a new comparison")
        return 130
    except BaseException as err:
        out_run.write_status(state="failed", error=f"{type(err).__name__}: {err}", ended=time.time())
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = summarise(rows)
    minutes = (time.time() - t0) / 60
    command = " ".join(["python -m core.compare", *(argv if argv is not None else sys.argv[1:])])
    md = to_markdown(summary, f"{cfg.name}: fine-tuned on the same labels, {len(cfg.seeds)} seed(s)")
    md += f"\nCommand: `{command}` ({minutes:.1f} min on this machine). Scores on the {rows[0]['split']} split.\n"
    atomic_write_bytes(out_run.path / "results.csv", to_csv(rows).encode())
    atomic_write_bytes(out_run.path / "summary.csv", to_csv(summary).encode())
    atomic_write_bytes(out_run.path / "table.md", md.encode())
    if args.out:
        atomic_write_bytes(Path(args.out), md.encode())
    out_run.write_status(state="completed", ended=time.time(), kind="compare")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
