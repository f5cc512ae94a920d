"""``false-wb``: one command for the engine and the apps, installed by ``pip install -e .``.

    false-wb pretrain --config configs/demo_cpu.yaml train.max_steps=3
    false-wb finetune | compare | probe | segment | evaluate | export | fingerprint | fn-report | runs ...
    false-wb app      (the Streamlit workbench)        false-wb demo   (the Gradio demo)

Each subcommand is the module's own command line (``python -m core.<module>`` keeps working); ``false-wb <cmd> -h``
shows its options. Help and a wrong option are answered from the light parsers of ``core.cli_args`` (and
``workbench.gradio_args``) before the command's module, with torch, is imported: at once, not in 5-13 s. A relative
``--config`` that is not found from the current folder is read from the project's ``configs/`` (so the presets work
from anywhere).
"""
from __future__ import annotations

import importlib
import subprocess
import sys

from .cli_args import parse_run_args
from .console import say, silence
from .host_memory import keep_freed_host_memory
from .store.runs import REPO_ROOT

COMMANDS = {
    "pretrain": ("core.ssl.pretrain", "contrastive pretraining (SimCLR / MoCo v2, with or without FALSE)"),
    "finetune": ("core.seg.finetune_cli", "segmentation fine-tuning of a pretrained encoder"),
    "compare": ("core.seg.compare", "methods x seeds with paired intervals"),
    "probe": ("core.seg.probe", "linear probe of a frozen encoder on whole held-out scenes"),
    "segment": ("core.seg.segment_cli", "segment image files (auto model choice, reports, GeoTIFF masks)"),
    "evaluate": ("core.seg.evaluate", "a segmentation checkpoint's scores on the held-out scenes its card names"),
    "export": ("core.store.export", "a run's model as a small shipped checkpoint"),
    "fingerprint": ("core.seg.fingerprint", "give a checkpoint a domain fingerprint"),
    "track": ("core.store.track", "send runs to TensorBoard or MLflow (runs made before train.trackers too)"),
    "runs": ("core.store.runs_cli", "list the runs, newest first: kind, state, method, steps, figure"),
    "fn-report": ("core.analysis.fn_report_cli", "how good a run's false-negative flags are, against reference selectors"),
    "demo": ("workbench.gradio_app", "the Gradio upload-and-segment demo with its HTTP API"),
}

TRAINING = ("pretrain", "finetune", "compare", "probe")  # training processes: freed host memory kept for reuse


APP_HELP = """usage: false-wb app [STREAMLIT OPTIONS]

The Streamlit workbench (`streamlit run workbench`, from the project folder so that its .streamlit/config.toml
applies). Options go to `streamlit run`, e.g.:
  false-wb app --server.port 8502                 another port
  false-wb app --server.address 0.0.0.0           reachable from other machines
`python -m streamlit run --help` lists them all. Runs go to runs/ (or $FALSE_WB_RUNS), data to data/
($FALSE_WB_DATA)."""


def _usage() -> str:
    width = max(map(len, COMMANDS)) + 2
    lines = ["usage: false-wb COMMAND [options]   (false-wb COMMAND -h for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}{what}" for name, (_, what) in COMMANDS.items()]
    lines.append(f"  {'app':<{width}}the Streamlit workbench (extra options go to `streamlit run`)")
    return "\n".join(lines)


def check_arguments(cmd: str, rest: list[str], prog: str | None = None) -> None:
    """Parse ``rest`` with the command's light parser: ``-h`` prints its help and a wrong option its error, each
    exiting as argparse does (SystemExit); arguments it accepts return, for the command to parse again. ``prog``:
    the command as typed, for the usage line (``false-wb CMD`` unless a ``python -m`` shim says otherwise)."""
    prog = prog or f"false-wb {cmd}"
    if cmd == "demo":
        from workbench.gradio_args import demo_parser

        demo_parser(prog).parse_args(rest)
        return
    from .cli_args import PARSERS

    build, intermixed = PARSERS[cmd]
    parser = build(prog)
    if intermixed:
        parse_run_args(parser, rest)
    else:
        parser.parse_args(rest)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "app" and any(a in ("-h", "--help") for a in rest):  # streamlit run would refuse -h
        print(APP_HELP)
        return 0
    if cmd == "app":
        # from the repository, so that its .streamlit/config.toml (server, upload size, no post-run GC) applies
        return subprocess.call([sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "workbench"), *rest],
                               cwd=REPO_ROOT)
    if cmd not in COMMANDS:
        print(f"error: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    sys.argv = [prog or f"false-wb {cmd}", *rest]  # argparse's usage line names the command as typed
    try:
        check_arguments(cmd, rest, prog)  # help, or a wrong option: answered here, before the heavy import
    except SystemExit as exc:  # argparse has printed the help, or the usage line and what is wrong
        return exc.code if isinstance(exc.code, int) else 2
    if cmd in TRAINING:
        keep_freed_host_memory()
    from .console import plain_warnings

    try:
        with plain_warnings():  # `warning: ...`, not our file and source line, for every command
            result = importlib.import_module(COMMANDS[cmd][0]).main(rest)
    except KeyboardInterrupt:  # a command with no stop of its own (evaluate, fingerprint): one line, not torch's stack
        say("error: interrupted", err=True)
        return 130
    except BrokenPipeError:  # a reader gone (| head) under a line not written by say(): no traceback either
        silence(sys.stdout)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
