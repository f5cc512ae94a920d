"""``python -m core.evaluate`` (as cards and docs write it) runs ``core.seg.evaluate``."""
import sys

if __name__ == "__main__":  # through false-wb's dispatcher: help and a wrong option answered before torch loads
    from core.cli import main as false_wb

    sys.exit(false_wb(["evaluate", *sys.argv[1:]], prog="python -m core.evaluate"))

from core.seg.evaluate import main  # noqa: E402,F401 (for callers of core.evaluate.main)
