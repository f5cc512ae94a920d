"""``false-wb track RUN --to tensorboard|mlflow``: runs made before (or without) ``train.trackers`` sent to the
trackers researchers keep their experiments in, through the same path a live run uses (``core.store.trackers``).
Sending twice sends only what is new; a live run is left to its own trainer."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cli_args import track_parser
from ..console import say
from .runs import NotARunError, Run, open_run_arg
from .trackers import RunTracking, TrackerError, where_tracked


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return track_parser().parse_args(argv)


def flag_pictures(run: Run) -> Any:
    """What draws a pretraining run's flagged pairs: its data set rebuilt as it trained (None for other runs)."""
    if (run.status().get("kind") or "pretrain") != "pretrain" or not (run.path / "fns.jsonl").is_file():
        return None
    from ..analysis.fn_scoring import run_config
    from ..analysis.pair_grid import pair_grid
    from ..data import build_dataset

    dataset = build_dataset(run_config(run).data, progress=True)
    return lambda rows: pair_grid(dataset, rows)


def track(run: Run, to: list[str], mlflow_uri: str | None, pictures: int) -> str:
    if run.is_live():
        raise TrackerError(f"{run.path.name} is still running: it is tracked by its own trainer when launched "
                           "with train.trackers; track it here once it has ended")
    draw = flag_pictures(run) if pictures > 0 else None
    tracking = RunTracking(run, to, mlflow_uri, pictures=draw)
    rows = tracking.sync()
    made = tracking.pictures_over_time(pictures) if draw is not None else 0
    tracking.close(run.status().get("state"))
    where = where_tracked(run)
    return (f"{run.path.name}: {rows} new metric row{'' if rows == 1 else 's'}, {made} picture{'' if made == 1 else 's'}"
            f" -> {'; '.join(where[n][0] for n in to)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    code = 0
    for text in args.runs:
        try:
            say(track(open_run_arg(text), list(dict.fromkeys(args.to)), args.mlflow_uri, args.pictures))
        except (NotARunError, TrackerError, ValueError, OSError) as err:
            print(f"error: {text}: {' '.join(str(err).split())}", file=sys.stderr)
            code = 2
    return code


if __name__ == "__main__":
    sys.exit(main())
