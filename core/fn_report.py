"""``python -m core.fn_report`` (as cards and docs write it) runs ``core.analysis.fn_report_cli``."""
import sys

if __name__ == "__main__":  # through false-wb's dispatcher: help and a wrong option answered before torch loads
    from core.cli import main as false_wb

    sys.exit(false_wb(["fn-report", *sys.argv[1:]], prog="python -m core.fn_report"))

from core.analysis.fn_report_cli import main  # noqa: E402,F401 (for callers of core.fn_report.main)
