"""The house rules a newcomer relies on, checked on the source: modules small enough to read (at most
450 lines), functions that do one thing (at most 80 lines), and a docstring on every public module-level
function and class and on every public method of a public class."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "retort"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC.parent), path.read_text()


def test_modules_are_short():
    long = [f"{name}: {len(text.splitlines())} lines" for name, text in _modules()
            if len(text.splitlines()) > MAX_MODULE_LINES]  # fmt: skip
    assert not long, long


def test_functions_are_short():
    long = []
    for name, text in _modules():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_public_definitions_have_docstrings():
    missing = []
    for name, text in _modules():
        tree = ast.parse(text)
        if not ast.get_docstring(tree):
            missing.append(f"{name}: module")
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            if not ast.get_docstring(node):
                missing.append(f"{name}:{node.lineno} {node.name}")
            if isinstance(node, ast.ClassDef):
                for m in node.body:
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_"):
                        if not ast.get_docstring(m):
                            missing.append(f"{name}:{m.lineno} {node.name}.{m.name}")
    assert not missing, f"{len(missing)} without a docstring:\n" + "\n".join(missing)
