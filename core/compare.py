"""``python -m core.compare`` (as cards and docs write it) runs ``core.seg.compare``."""
import sys

from core.seg.compare import main

if __name__ == "__main__":
    sys.exit(main())
