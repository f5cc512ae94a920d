"""``python -m core.runs`` lists the runs (``core.store.runs_cli``), as ``false-wb runs`` does."""
import sys

if __name__ == "__main__":  # through false-wb's dispatcher: help and a wrong option answered at once
    from core.cli import main as false_wb

    sys.exit(false_wb(["runs", *sys.argv[1:]], prog="python -m core.runs"))

from core.store.runs_cli import main  # noqa: E402,F401 (for callers of core.runs.main)
