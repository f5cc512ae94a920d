"""``python -m core.fn_report`` (as cards and docs write it) runs ``core.analysis.fn_report``."""
import sys

from core.analysis.fn_report import main

if __name__ == "__main__":
    sys.exit(main())
