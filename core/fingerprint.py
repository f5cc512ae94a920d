"""``python -m core.fingerprint`` (as cards and docs write it) runs ``core.seg.fingerprint``."""
import sys

from core.seg.fingerprint import main

if __name__ == "__main__":
    sys.exit(main())
