"""``python -m core.segment`` (as cards and docs write it) runs ``core.seg.segment_cli``."""
import sys

from core.seg.segment_cli import main

if __name__ == "__main__":
    sys.exit(main())
