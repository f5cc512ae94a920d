"""Every third-party package that the engine, the workbench and its pages import is declared in requirements.txt
(issue 30): an undeclared one works here only because another package happened to pull it in."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the import name where it differs from the distribution's name
DISTRIBUTION = {"PIL": "pillow", "mlflow": "mlflow-skinny", "yaml": "pyyaml", "sklearn": "scikit-learn", "umap": "umap-learn",
                "segmentation_models_pytorch": "segmentation-models-pytorch"}
OWN = {"core", "workbench", "pages"}


def third_party_imports() -> set[str]:
    found: set[str] = set()
    for folder in OWN:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in OWN}


def declared() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower())
    return names


def test_every_third_party_import_is_declared() -> None:
    imports = third_party_imports()
    assert {"torch", "numpy", "streamlit", "scipy"} <= imports  # the scan sees the code
    missing = sorted(m for m in imports if DISTRIBUTION.get(m, m).lower().replace("_", "-") not in declared())
    assert missing == [], f"imported but not in requirements.txt: {missing}"
