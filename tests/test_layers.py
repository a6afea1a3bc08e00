"""Data flows one way (config, data, models, objective, trainer, evaluator, report): the import graph of
src/retort, read with ast (imports inside functions included), has no circle, and no module imports
one of a higher layer than its own.

The layer order, lowest first (a module may import its own layer and those below):

    0 base        errors, paths, progress, distributed, rundir, runlog, config, cachedir
    1 data        retort.data            (data and models sit side by side: neither imports the other)
    1 models      retort.models
    2 scoring     evaluation.metrics, evaluation.evaluator (predictions of a model on a split, and their
                  metrics: the trainer evaluates dev during training, and the teacher cache predicts)
    3 objective   retort.distill
    4 trainer     assembly, checkpoint, train
    5 evaluator   evaluation.run, runtime, export, dse, mining, bench, report, evidence (what uses a
                  trained model, and the tables, plots and the evidence page of runs)
    6 commands    cli, demo, __main__, the package itself

Within layer 5, the training loop never reaches report (the command plots, not the loop: train is
layer 4).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "retort"

LAYERS = [
    ("base", ["retort.errors", "retort.paths", "retort.progress", "retort.distributed", "retort.rundir",
              "retort.runlog", "retort.config", "retort.cachedir"]),
    ("data", ["retort.data"]),
    ("models", ["retort.models"]),
    ("scoring", ["retort.evaluation.metrics", "retort.evaluation.evaluator"]),
    ("objective", ["retort.distill"]),
    ("trainer", ["retort.assembly", "retort.checkpoint", "retort.train"]),
    ("evaluator", ["retort.evaluation", "retort.runtime", "retort.export", "retort.dse", "retort.mining",
                   "retort.bench", "retort.report", "retort.evidence"]),
    ("commands", ["retort.cli", "retort.demo", "retort.__main__", "retort"]),
]  # fmt: skip
RANK = {"base": 0, "data": 1, "models": 1, "scoring": 2, "objective": 3, "trainer": 4, "evaluator": 5, "commands": 6}
SIDE_BY_SIDE = [("data", "models"), ("models", "data")]  # same rank, and still never importing each other


def layer_of(module: str) -> str:
    """The most specific prefix in ``LAYERS`` that names ``module``."""
    best, length = None, -1
    for layer, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length:
                best, length = layer, len(p)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


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
            # "retort" itself (``from retort import __version__``) runs first for any submodule anyway
            graph[name].update(t for t in targets if t in modules and t not in (name, "retort"))
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


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_no_import_against_the_flow():
    bad = []
    for a, targets in import_graph().items():
        for b in targets:
            la, lb = layer_of(a), layer_of(b)
            if RANK[lb] > RANK[la] or (la, lb) in SIDE_BY_SIDE:
                bad.append(f"{a} ({la}) imports {b} ({lb})")
    assert not bad, bad
