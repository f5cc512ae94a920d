"""Write ``tests/durations.json`` (seconds per test file) from a pytest JUnit XML report, e.g. after
``bash scripts/test.sh --junitxml=/tmp/junit.xml``. tests/conftest.py starts the longest files first, so that the two
workers of ``--dist loadfile`` end together instead of one waiting for the other's last long file.

    python scripts/test_durations.py /tmp/junit.xml
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "durations.json"


def main(report: str) -> int:
    seconds: Counter[str] = Counter()
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "")
        seconds[module.replace(".", "/") + ".py"] += float(case.get("time") or 0)
    OUT.write_text(json.dumps({name: round(s, 1) for name, s in seconds.most_common()}, indent=1) + "\n")
    print(f"{OUT}: {len(seconds)} files, {sum(seconds.values()):.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]) if len(sys.argv) == 2 else print(__doc__) or 2)
