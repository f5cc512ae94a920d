"""``python -m core.finetune`` (as cards and docs write it) runs ``core.seg.finetune``."""
import sys

from core.seg.finetune import main

if __name__ == "__main__":
    sys.exit(main())
