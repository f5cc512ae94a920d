"""``python -m core.evaluate`` (as cards and docs write it) runs ``core.seg.evaluate``."""
import sys

from core.seg.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
