"""Data flows one way (config, data, models, objective, trainer, evaluator, report): the import graph of
src/retort, read with ast (imports inside functions included), has no circle and none of the imports
that run against that flow."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "retort"

# (importer prefix, imported prefix): never
FORBIDDEN = [
    ("retort.models", "retort.data"),
    ("retort.models", "retort.distill"),
    ("retort.models", "retort.dse"),
    ("retort.data", "retort.dse"),
    ("retort.train", "retort.report"),  # the command plots, not the loop
]


def module_name(path: Path) -> str:
    return ".".join(("retort", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("retort"):
                base = node.module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("retort")]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def test_no_import_circles():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circle = path[path.index(nxt) :] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_no_import_against_the_flow():
    bad = [
        f"{a} imports {b}"
        for a, targets in import_graph().items()
        for b in targets
        for low, high in FORBIDDEN
        if (a == low or a.startswith(low + ".")) and (b == high or b.startswith(high + "."))
    ]
    assert not bad, bad
