"""``python -m core.pretrain`` (as cards and docs write it) runs ``core.ssl.pretrain``."""
import sys

if __name__ == "__main__":  # through false-wb's dispatcher: help and a wrong option answered before torch loads
    from core.cli import main as false_wb

    sys.exit(false_wb(["pretrain", *sys.argv[1:]], prog="python -m core.pretrain"))

from core.ssl.pretrain import main  # noqa: E402,F401 (for callers of core.pretrain.main)
