"""``python -m core.segment`` (as cards and docs write it) runs ``core.seg.segment``."""
import sys

from core.seg.segment import main

if __name__ == "__main__":
    sys.exit(main())
