"""``python -m core.segment`` (as cards and docs write it) runs ``core.seg.segment_cli``."""
import sys

if __name__ == "__main__":  # through false-wb's dispatcher: help and a wrong option answered before torch loads
    from core.cli import main as false_wb

    sys.exit(false_wb(["segment", *sys.argv[1:]], prog="python -m core.segment"))

from core.seg.segment_cli import main  # noqa: E402,F401 (for callers of core.segment.main)
