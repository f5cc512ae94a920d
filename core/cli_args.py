"""Every engine command's options, in a module that imports nothing heavy.

Why a module of its own: each command's code imports torch (and the demo gradio), 5-13 s on a busy machine, and
``false-wb pretrain -h`` or a mistyped flag should not wait for that. ``core.cli`` answers help and option errors from
these parsers before it imports the command; the commands parse their arguments with the same parsers, so what help
shows is what they accept. Descriptions are read from the command modules' docstrings without importing them.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from functools import cache
from pathlib import Path

from .imaging.budget import DEFAULT_MAX_MEGAPIXELS, MAX_MEGAPIXELS_ENV
from .store.trackers import TRACKERS


@cache
def docstring(module: str) -> str:
    """A module's docstring, read from its source file: the module itself is not imported."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ""
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""


def summary(module: str) -> str:
    """The first paragraph of a module's docstring: a command's description under its usage line."""
    return plain(docstring(module).split("\n\n")[0])


def plain(text: str) -> str:
    """Docstring markup (``code``) as a terminal shows text: `code`."""
    return text.replace("``", "`")


# ------------------------------------------------------------------------------------------------ training commands
def run_arguments(prog: str, description: str, config_help: str) -> argparse.ArgumentParser:
    """The flags every training command shares; callers add their own."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help=config_help)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--run-dir", metavar="RUN_DIR",
                   help="start a new run in this empty run folder (made by the workbench's launcher)")
    p.add_argument("--runs-root", help="where run folders go (default runs/ or $FALSE_WB_RUNS)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.max_steps=50")
    return p


def pretrain_parser(prog: str = "false-wb pretrain") -> argparse.ArgumentParser:
    return run_arguments(prog, summary("core.ssl.pretrain"), "YAML config (see configs/)")


def finetune_parser(prog: str = "false-wb finetune") -> argparse.ArgumentParser:
    return run_arguments(prog, summary("core.seg.finetune"),
                         "YAML config (see configs/finetune_*.yaml)")


def compare_parser(prog: str = "false-wb compare") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=summary("core.seg.compare"),
        epilog="How long: each preset's first line says (compare_cpu about 25 minutes on 2 CPU cores, compare_dglc_cpu "
               "under an hour); it runs methods x pretraining seeds x seeds units. A quick look: fewer of them and "
               "shorter units, e.g. \"methods=[simclr,simclr_false]\" \"pretrain_seeds=[0,1]\" "
               "\"pretrain_overrides+=[train.max_steps=20]\" (a dotted setting for every pretraining unit; "
               "finetune_overrides and probe_overrides likewise). A stopped comparison resumes with --resume.")
    p.add_argument("--config", help="comparison config (see configs/compare_*.yaml)")
    p.add_argument("--run-dir", metavar="RUN_DIR",
                   help="write into this run folder made by the workbench's launcher (its config.yaml is used)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or failed comparison")
    p.add_argument("--out", help="also write the Markdown table (with the command) to this file")
    p.add_argument("--runs-root", help="where run folders go (default runs/ or $FALSE_WB_RUNS)")
    p.add_argument("--jobs", type=int, metavar="N", help="units at once, each in its own process (the config's jobs "
                   "otherwise; capped to the cores, or GPUs x units_per_gpu)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="e.g. \"methods=[simclr,simclr_false]\" \"pretrain_seeds=[0,1]\"")
    return p


def probe_parser(prog: str = "false-wb probe") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=summary("core.seg.probe"))
    p.add_argument("--config", help="YAML probe config (see configs/probe_*.yaml)")
    p.add_argument("--out", help="also write the result as JSON to this file")
    p.add_argument("--run-dir", metavar="RUN_DIR", help="probe in this run folder (made by the workbench's "
                   "launcher; its config.yaml says what to do): status, records and test_metrics.json go there")
    p.add_argument("--resume", metavar="RUN_DIR", help="run a stopped or failed probe of a run folder again")
    p.add_argument("--runs-root", help="where a new probe's run folder goes (default runs/ or $FALSE_WB_RUNS)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. model.init=runs/<run> seed=1")
    return p


def parse_run_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Overrides may come before, between and after the flags. A run folder to continue or fill reads its own
    ``config.yaml``: a ``--config`` beside it would be ignored without a word, so it is refused."""
    args = p.parse_intermixed_args(argv)
    folder = "--resume" if getattr(args, "resume", None) else "--run-dir" if getattr(args, "run_dir", None) else None
    if folder and getattr(args, "config", None):
        p.error(f"--config with {folder}: the run folder's own config.yaml is used; change its settings with "
                "key=value overrides")
    return args


# ------------------------------------------------------------------------------------------------ segmentation
def _tile(text: str) -> int:
    from .seg.infer import check_tile

    try:
        return check_tile(int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _overlap(text: str) -> float:
    from .seg.infer import overlap_pixels

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"overlap must be a fraction in [0, 1) or pixels, got {text!r}") from None
    if value >= 1 and not text.strip().lstrip("+").isdigit():  # "1.0" was read as 1 pixel: a fraction was meant
        raise argparse.ArgumentTypeError(f"overlap {text}: a fraction must be below 1 (0.25 = a quarter of the tile), "
                                         "pixels are written as a whole number (64)")
    try:
        overlap_pixels(value, 1 << 30)  # range check only; the tile is checked later
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def count_or_none(text: str) -> int:
    """A count that may be 0 (none); a negative one was taken as none without a word (a review)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text!r}")
    return value


def _megapixels(text: str) -> float:
    from .imaging.budget import max_pixels

    try:
        value = float(text)
        max_pixels(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).split(":")[-1].strip() if "budget" in str(err) else
                                         f"must be a number of megapixels, got {text!r}") from None
    return value


class _ImagesThenLabels(argparse.ArgumentParser):
    """``segment --labels m.png img.jpg`` gave every file to --labels and said only "required: IMAGE"."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        if "IMAGE" in message and "--labels" in getattr(self, "_given", []):
            message += ("; --labels takes every file after it, so give the images first: IMAGE ... --labels "
                        "MASK ... (one mask per image, in the same order)")
        super().error(message)


def segment_parser(prog: str = "false-wb segment") -> argparse.ArgumentParser:
    p = _ImagesThenLabels(prog=prog, description=summary("core.seg.segment_cli"))
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (TIFF/GeoTIFF, PNG, JPEG, ...)")
    p.add_argument("--checkpoint", default="auto",
                   help="segmentation checkpoint (.safetensors) or a shipped model's name (dubai_seg), or auto "
                        "(default): per image the shipped or fine-tuned model whose training domain fits it best")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--tile", type=_tile, default=512, help="window side in pixels, a multiple of 32 (512)")
    p.add_argument("--overlap", type=_overlap, default=0.25,
                   help="window overlap: a fraction of the tile below 1, else pixels (0.25)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="windows per forward pass (4)")
    p.add_argument("--tta", action="store_true", help="average with a horizontally flipped pass")
    p.add_argument("--max-megapixels", type=_megapixels, default=None,
                   help=f"pixel budget per image, checked from the file's header before decoding (default "
                        f"${MAX_MEGAPIXELS_ENV} or {DEFAULT_MAX_MEGAPIXELS:g})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--no-resample", action="store_true",
                   help="run at the image's own pixel size even when the model's differs by more than 1.5x")
    p.add_argument("--keep-borders", action="store_true",
                   help="classify near-white/near-black regions in the image's corners too (alpha, masks, NaN and "
                        "deep files' nodata are always left out; an 8-bit nodata value where it reaches the border)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--labels", nargs="+", metavar="MASK", default=None,
                   help="a label mask per image, in the same order, - for an image without one (class indices or "
                        "class colours; a palette PNG by its colours): each image is scored against its mask and the "
                        "report holds label_score")
    return p


def evaluate_parser(prog: str = "false-wb evaluate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=summary("core.seg.evaluate"))
    p.add_argument("checkpoint", type=Path, help="a checkpoint file, or a shipped model's name (dubai_seg)")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="the held-out scenes to score (default test: the card's figures)")
    p.add_argument("--data-root", default=None, help="where the data set is on this machine (else the card's "
                   "folder, a relative one under the repository)")
    p.add_argument("--config", type=Path, default=None, help="the fine-tuning config, when the card has none")
    p.add_argument("--tta", action="store_true",
                   help="average each window with its mirror image (as core.segment --tta; twice the work)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--write-card", action="store_true", help="store the result in the checkpoint's card: rewrites "
                   "the checkpoint file itself (atomically, same weights), a shipped one too; refused with --tta")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def fingerprint_parser(prog: str = "false-wb fingerprint") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=summary("core.seg.fingerprint"))
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--config", type=Path, default=None, help="the fine-tuning config (when the card has none)")
    p.add_argument("--out", type=Path, default=None, help="write a copy instead of rewriting the checkpoint")
    p.add_argument("--data-root", default=None, help="where the card's data set is on this machine (an exported "
                   "card names its folder <elsewhere>/...)")
    p.add_argument("--scene-digests", action="store_true", help="only add the digests and thumbnails of its scenes' "
                   "image files (an upload of one, or a re-encoded copy, is then known as that scene), the fingerprint "
                   "as it is")
    return p


# ------------------------------------------------------------------------------------------------ runs
def export_parser(prog: str = "false-wb export") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=summary("core.store.export"))
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, type=Path, help="the checkpoint file to write (.safetensors; its card "
                   "beside it as .json)")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")
    return p


def track_parser(prog: str = "false-wb track") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=plain(docstring("core.store.track")),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="a run folder, or a run's name under the runs root")
    p.add_argument("--to", action="append", choices=TRACKERS, required=True,
                   help="a tracker (repeat for both): tensorboard writes event files into the run folder, mlflow "
                        "logs into a local store beside the runs or --mlflow-uri")
    p.add_argument("--mlflow-uri", help="an MLflow tracking URI (default: the local store <runs root>/mlruns)")
    p.add_argument("--pictures", type=count_or_none, default=8, metavar="N",
                   help="a pretraining run's flagged pairs at up to N steps (rebuilds its data set; 0: none)")
    return p


def fn_report_parser(prog: str = "false-wb fn-report") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=summary("core.analysis.fn_report_cli"))
    p.add_argument("run", metavar="RUN", help="a pretraining run folder (loss.name=false, any detector; on a labeled "
                                              "data set its flags are scored, on unlabeled imagery summarised), or a "
                                              "comparison run: every method's flags beside its mIoU")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.add_argument("--no-encoder", action="store_true", help="leave out the encoder selector (no model is loaded)")
    p.add_argument("--refresh", action="store_true", help="recompute even if the stored report is current")
    return p


def runs_parser(prog: str = "false-wb runs") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=plain(docstring("core.store.runs_cli")),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=("pretrain", "finetune", "probe", "compare"), help="runs of one kind only")
    p.add_argument("--state", choices=("starting", "running", "stopping", "stopped", "completed", "failed", "died"),
                   help="runs in one state only (died: its process is gone without a word)")
    p.add_argument("--name", help="the runs made with name=NAME")
    p.add_argument("--last", type=positive_int, default=20, metavar="N", help="the N newest (default 20)")
    p.add_argument("--all", action="store_true", help="every run")
    p.add_argument("--json", action="store_true", help="every field of each row, as JSON")
    p.add_argument("--runs-root", help="where run folders are (default runs/ or $FALSE_WB_RUNS)")
    return p


# name -> (parser, whether its command parses intermixed: key=value overrides between the flags)
PARSERS = {"pretrain": (pretrain_parser, True), "finetune": (finetune_parser, True),
           "compare": (compare_parser, True), "probe": (probe_parser, True), "segment": (segment_parser, False),
           "evaluate": (evaluate_parser, False), "export": (export_parser, False),
           "fingerprint": (fingerprint_parser, False), "track": (track_parser, False),
           "fn-report": (fn_report_parser, False), "runs": (runs_parser, False)}
