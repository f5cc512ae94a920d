"""``python -m core.fingerprint`` (as cards and docs write it) runs ``core.seg.fingerprint``."""
import sys

if __name__ == "__main__":  # through false-wb's dispatcher: help and a wrong option answered before torch loads
    from core.cli import main as false_wb

    sys.exit(false_wb(["fingerprint", *sys.argv[1:]], prog="python -m core.fingerprint"))

from core.seg.fingerprint import main  # noqa: E402,F401 (for callers of core.fingerprint.main)
