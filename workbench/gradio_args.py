"""The Gradio demo's options and limits, light to import: ``false-wb demo -h`` answers before gradio and torch load."""
from __future__ import annotations

import argparse

from core.cli_args import summary

TIME_BUDGET_S = 120.0  # per request; bigger scenes belong to `python -m core.segment`
CONCURRENCY = 2  # requests segmented at once: a small request is not stuck behind a big one
MAX_QUEUE = 16  # requests waiting beyond this are refused at once (the page shows the queue and its wait)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return value


def demo_parser(prog: str = "false-wb demo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=summary("workbench.gradio_app"))
    p.add_argument("--port", type=_port, default=None, help="port (default: 7860 or the next free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    p.add_argument("--checkpoint", default="auto",
                   help="segmentation checkpoint (.safetensors), or auto (default): per image the model whose "
                        "training domain fits it best")
    p.add_argument("--max-megapixels", type=float, default=None,
                   help="pixel budget per image, checked from the header before decoding (default "
                        "$FALSE_WB_MAX_MEGAPIXELS or 50)")
    p.add_argument("--time-budget", type=float, default=TIME_BUDGET_S, metavar="SECONDS",
                   help=f"stop a request that will take longer ({TIME_BUDGET_S:g}; 0: no limit)")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY,
                   help=f"requests segmented at once ({CONCURRENCY}); more wait in a queue of {MAX_QUEUE}")
    return p
