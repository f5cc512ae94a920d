"""The README and the architecture page name code that exists: every ``core.…`` name resolves to a module (and
attribute), every ``python -m core.…`` runs its module, and the README's Python example runs as written."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "ARCHITECTURE.md"]
NAME = re.compile(r"(?<![\w/.])core(?:\.[A-Za-z_]\w*)+")


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module, or a module followed by attributes of it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_core_name_in_the_docs_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    names = {m.group(0).rstrip(".") for m in NAME.finditer(text)}
    names = {n.removesuffix(".py") for n in names}
    assert names, "the page names no code"
    missing = sorted(n for n in names if not resolves(n))
    assert not missing, f"{doc.name} names code that does not exist: {missing}"


def test_the_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102 - our own README


def test_the_checkpoints_readme_shows_the_cards_as_model_table_prints_them() -> None:
    """The README's figures are the cards' figures (scripts/model_table.py reads the cards); a card changed without
    the README, or the README edited by hand, fails here."""
    import subprocess
    import sys

    printed = subprocess.run([sys.executable, str(ROOT / "scripts" / "model_table.py")], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert printed in (ROOT / "checkpoints" / "README.md").read_text()


# a command in the README: `false-wb CMD ...` or `python -m core.MODULE ...`, up to a comment or the span's end
COMMAND = re.compile(r"(?:false-wb ([a-z-]+)|python -m core\.([a-z_]+))([^`#\n]*)")


def readme_commands() -> list[tuple[str, list[str], str]]:
    """(command, arguments, as written) of every engine command the README shows; optional parts ([...]) left out,
    placeholders (<run-id>) filled with a word; a command continued on the next line (\\), and a bare name in prose
    (`python -m core.segment`, no arguments), are left out."""
    import shlex

    found = []
    for m in COMMAND.finditer((ROOT / "README.md").read_text(encoding="utf-8")):
        cmd, rest = m.group(1) or m.group(2).replace("_", "-"), m.group(3)
        rest = re.sub(r"<[^>]*>", "x", re.sub(r"(?<=\s)\[[^\]]*\]", "", rest))  # optional parts out first
        if not rest.strip() or rest.rstrip().endswith("\\") or "..." in rest:
            continue
        found.append((cmd, shlex.split(rest), m.group(0).strip()))
    return found


def test_every_engine_command_in_the_readme_parses_as_written() -> None:
    """A review typed `false-wb segment image.tif` from the README and got "the following arguments are required:
    --out": each command the README shows is parsed by its command's own parser."""
    from core.cli import check_arguments
    from core.cli_args import PARSERS

    commands = [c for c in readme_commands() if c[0] in PARSERS]
    assert len(commands) >= 20 and {"segment", "pretrain", "evaluate", "fn-report"} <= {c[0] for c in commands}
    for cmd, args, written in commands:
        try:
            check_arguments(cmd, args)
        except SystemExit as stop:
            pytest.fail(f"the README's `{written}` does not parse (exit {stop.code})")
