"""``python -m core.finetune`` (as cards and docs write it) runs ``core.seg.finetune_cli``."""
import sys

from core.seg.finetune_cli import main

if __name__ == "__main__":
    sys.exit(main())
