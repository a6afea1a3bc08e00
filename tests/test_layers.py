"""Data flows one way (config, data, models, objective, training, evaluation and deployment, report,
commands): the import graph of src/retort, read with ast (imports inside functions included), has no
circle, and no module imports one of a higher layer than its own.

The layer order, lowest first (a module may import its own layer and those below):

    0 base        errors, paths, outputs, progress, config, options, machine, cachedir, rows: plumbing every
                  layer uses
    1 data        retort.data            (data and models sit side by side: neither imports the other)
    1 models      retort.models          (inference included: a model's logits on batches it is given)
    2 scoring     evaluation.metrics, evaluation.evaluator, evaluation.significance (the trainer
                  evaluates dev during training with them)
    3 objective   retort.distill         (losses, layer maps and weights, objective, presets, teacher
                  cache, transfer pairs mined with a sentence-embedding model)
    4 training    retort.training        (assembly, loop, checkpoint, log, output folders, processes)
    5 using       retort.evaluation (the rest: one evaluation path for PyTorch and ONNX folders),
                  retort.deploy (export, the torch-free runtime, DSE index/search, bench)
    6 report      retort.report          (tables, figures, run records, statistics, the evidence page)
    7 commands    retort.commands, cli, api, __main__, the package itself

A function-local import of a retort module is there only to keep a heavy library lazy: the module it
imports must bring (at its top level, directly or through other retort modules) a heavy library that the
importing module does not already load at its top level. Any other local import is a hidden dependency
and fails ``test_local_imports_are_for_laziness``.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "retort"

LAYERS = [
    ("base", ["retort.errors", "retort.paths", "retort.outputs", "retort.progress", "retort.config",
              "retort.options", "retort.machine", "retort.cachedir", "retort.rows"]),
    ("data", ["retort.data"]),
    ("models", ["retort.models"]),
    ("scoring", ["retort.evaluation.metrics", "retort.evaluation.evaluator", "retort.evaluation.significance"]),
    ("objective", ["retort.distill"]),
    ("training", ["retort.training"]),
    ("using", ["retort.evaluation", "retort.deploy"]),
    ("report", ["retort.report"]),
    ("commands", ["retort.commands", "retort.cli", "retort.api", "retort.__main__", "retort"]),
]  # fmt: skip
RANK = {"base": 0, "data": 1, "models": 1, "scoring": 2, "objective": 3, "training": 4, "using": 5, "report": 6,
        "commands": 7}  # fmt: skip
SIDE_BY_SIDE = [("data", "models"), ("models", "data")]  # same rank, and still never importing each other
HEAVY = {"torch", "transformers", "onnxruntime", "onnx", "matplotlib", "safetensors", "tokenizers", "scipy",
         "sklearn", "faiss", "datasets", "accelerate", "tensorboard", "numpy", "yaml", "tqdm", "onnxscript",
         "sentence_transformers", "textbrewer", "openvino"}  # fmt: skip


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


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


@functools.cache
def _imports(name: str, path: Path) -> tuple[tuple[str, bool, int], ...]:
    """(target module, top-level?, line) for every import of a module: retort ones resolved to a module
    of ours, others by their top package name. Parsed once per module."""
    return tuple(_read_imports(path))


def _read_imports(path: Path):
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        top = id(node) in top_level
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("retort"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    yield (full if full in MODULES else node.module), top, node.lineno
            else:
                yield node.module.split(".")[0], top, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield (a.name if a.name.startswith("retort") else a.name.split(".")[0]), top, node.lineno


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        # "retort" itself (``from retort import __version__``) runs first for any submodule anyway
        graph[name].update(t for t, _, _ in _imports(name, path) if t in MODULES and t not in (name, "retort"))
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


@functools.cache
def _heavy(module: str) -> frozenset[str]:
    """``_heavy_at_top`` of one module, computed once."""
    return frozenset(_heavy_at_top(module))


def _heavy_at_top(module: str, seen: set[str] | None = None) -> set[str]:
    """Heavy libraries a module loads when it is imported: its own top-level imports, and those of the
    retort modules it imports at top level."""
    seen = set() if seen is None else seen
    if module in seen or module not in MODULES:
        return set()
    seen.add(module)
    out = set()
    for target, top, _ in _imports(module, MODULES[module]):
        if not top:
            continue
        if target in HEAVY:
            out.add(target)
        elif target in MODULES and target != "retort":
            out |= _heavy_at_top(target, seen)
    return out


def test_local_imports_are_for_laziness():
    bad = []
    for name, path in MODULES.items():
        mine = _heavy(name)
        tops = {t for t, top, _ in _imports(name, path) if top}
        for target, top, line in _imports(name, path):
            if top or target not in MODULES or target == "retort":
                continue
            if target in tops:
                bad.append(f"{name}:{line} imports {target} inside a function, and at its top level too")
            elif not (_heavy(target) - mine):
                bad.append(f"{name}:{line} imports {target} inside a function, which keeps nothing heavy lazy")
    assert not bad, "\n".join(bad)
