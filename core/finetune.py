"""``python -m core.finetune`` (as cards and docs write it) runs ``core.seg.finetune_cli``."""
import sys

if __name__ == "__main__":  # through false-wb's dispatcher: help and a wrong option answered before torch loads
    from core.cli import main as false_wb

    sys.exit(false_wb(["finetune", *sys.argv[1:]], prog="python -m core.finetune"))

from core.seg.finetune_cli import main  # noqa: E402,F401 (for callers of core.finetune.main)
