"""``python -m core.track`` runs ``core.store.track``."""
import sys

if __name__ == "__main__":  # through false-wb's dispatcher: help and a wrong option answered before torch loads
    from core.cli import main as false_wb

    sys.exit(false_wb(["track", *sys.argv[1:]], prog="python -m core.track"))

from core.store.track import main  # noqa: E402,F401 (for callers of core.track.main)
