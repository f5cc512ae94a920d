"""``python -m core.fn_report RUN`` (``false-wb fn-report``): how good a run's false-negative flags are, beside
reference selectors on the same batches (``core.analysis.fn_report``), or every method's flags beside its mIoU for a
comparison run (``core.analysis.compare_flags``); for a run on unlabeled imagery, whose flags cannot be scored, what its
detector and treatment did (``core.analysis.flag_summary``)."""
from __future__ import annotations

import json
import sys
from typing import Any

from ..cli_args import fn_report_parser
from ..config import ConfigError
from ..console import bar_stream, say
from ..store.runs import NotARunError, Run, open_run_arg
from .fn_report import FlagReportError, flag_report, no_detector_reason, report_lines
from .fn_scoring import run_config
from .proportions import margins

KIND_WORDS = {"finetune": "fine-tuning", "probe": "linear probe"}
# what each count of a flag report's JSON counts (a review read pairs_flagged 2560 beside pairs 2511 unexplained)
COUNTED_IN = {
    "pairs_flagged": "rows of the loss: an anchor view with a flagged negative (fns.jsonl's records)",
    "pairs_treated": "rows of the loss the treatment acted on",
    "units_flagged": "the report's unit (see 'unit'): a tile pick, or a tile pair, counted once a step",
    "pairs": "units scored: units_flagged less those of a tile without a class (excluded_unlabeled) or of a tile "
             "with itself",
    "calibrated.pairs": "units scored among those the treatment acted on",
}


def _unlabeled(run: Run) -> bool:
    """A pretraining with a detector on a set without labels: its flags cannot be scored, only summarised."""
    cfg = run_config(run)
    return no_detector_reason(run, cfg) is None and not cfg.data.labeled


def main(argv: list[str] | None = None) -> int:
    args = fn_report_parser().parse_args(argv)
    try:
        run = open_run_arg(args.run)
        from tqdm.auto import tqdm

        current: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if current.get("stage") != stage:  # one bar at a time, each stage in turn
                if current.get("bar") is not None:
                    current["bar"].close()
                current.update(stage=stage, bar=tqdm(total=total, desc=stage, file=bar_stream(), leave=False,
                                                     disable=None))  # drawn on a terminal only, not into a pipe
            current["bar"].n = done
            current["bar"].refresh()

        if run.kind() not in ("pretrain", "compare"):  # its settings are not a pretraining's: say what it is
            raise FlagReportError(f"{run.id} is a {KIND_WORDS.get(run.kind(), run.kind())} run; fn-report reads "
                                  "pretraining runs (their flags) and comparisons (every method's)")
        if run.kind() == "compare":
            from .compare_flags import comparison_flags, to_markdown

            report = comparison_flags(run, use_encoder=not args.no_encoder, progress=progress)
            text = to_markdown(report)
        elif _unlabeled(run):  # no quality figure without labels: what the detector did, and why no more
            from .flag_summary import summary_lines, unlabeled_summary

            report = unlabeled_summary(run, run_config(run))
            text = "\n".join(summary_lines(report))
        else:
            report = flag_report(run, use_encoder=not args.no_encoder, refresh=args.refresh, progress=progress)
            text = "\n".join(report_lines(report))
            report = {**report, "margins": margins(report), "counted_in": COUNTED_IN}  # the text's differences too
        if current.get("bar") is not None:
            current["bar"].close()
    except (FlagReportError, NotARunError, ConfigError, ValueError) as err:
        say(f"error: {err}", err=True)
        return 2
    say(json.dumps(report, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
