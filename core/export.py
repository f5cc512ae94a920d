"""``python -m core.export`` (as cards and docs write it) runs ``core.store.export``."""
import sys

if __name__ == "__main__":  # through false-wb's dispatcher: help and a wrong option answered before torch loads
    from core.cli import main as false_wb

    sys.exit(false_wb(["export", *sys.argv[1:]], prog="python -m core.export"))

from core.store.export import main  # noqa: E402,F401 (for callers of core.export.main)
