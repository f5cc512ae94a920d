"""``python -m core.fn_report`` (as cards and docs write it) runs ``core.analysis.fn_report_cli``."""
import sys

from core.analysis.fn_report_cli import main

if __name__ == "__main__":
    sys.exit(main())
