"""``python -m core.probe`` (as cards and docs write it) runs ``core.seg.probe``."""
import sys

from core.seg.probe import main

if __name__ == "__main__":
    sys.exit(main())
