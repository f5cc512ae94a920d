"""The version of the code that made a cache, derived from the code itself.

Why: tile caches were keyed by hand-bumped numbers (``CACHE_VERSION``, ``BAND_RULES``); a change in reading that
forgot the bump served stale tiles. ``code_version(modules)`` hashes the modules' syntax trees without docstrings,
so a change in what the code does rebuilds the caches keyed by it, while a comment or docstring edit does not.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
from functools import lru_cache


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_version(source: str) -> str:
    """A short hash of what Python ``source`` does: its syntax tree without comments and docstrings."""
    tree = _without_docstrings(ast.parse(source))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()[:12]


@lru_cache(maxsize=None)
def module_version(name: str) -> str:
    """``source_version`` of module ``name`` (read once per process); without its source (an install of compiled
    files only), a hash of its compiled file, so caches still follow the code."""
    module = importlib.import_module(name)
    try:
        return source_version(inspect.getsource(module))
    except (OSError, TypeError):
        path = getattr(module, "__file__", None)
        data = open(path, "rb").read() if path else name.encode()
        return hashlib.sha256(data).hexdigest()[:12]


def code_version(modules: tuple[str, ...]) -> str:
    """One hash over the modules (order kept): what a cache made by this code is keyed by."""
    joined = ",".join(f"{m}={module_version(m)}" for m in modules)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]
