"""The plain summary of run folders: one row per run found, whatever it is, beside the method comparison.

Every folder with a ``metrics.json`` is a row (teachers, students, ``retort dse train`` bi-encoders, general
distillation, the earlier stages of two-stage methods): its task, its method (a student's distillation
method; "fine-tune" for a teacher: no soft term, no temperature), its kind, the scores of the split it was
scored on with that split named (the dev set once, the best dev epoch, or held-out training rows: never
called "best dev" unless it is), the majority-class (regression: mean) baseline beside each score, its
batch-1 speed where a bench file timed its model, what it started from (its teacher, or a teacher's base)
and where the method comparison shows it, or why it leaves it out (``records.left_out``).

``summarize`` makes the rows (report.json keeps them as they are), ``summary_table`` lays them out for
the page, the terminal and Markdown alike. Nothing here reads a file: ``report.records`` does.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from retort.report.records import (
    DEFAULT_T,
    SKIPPED_STAGES,
    WEAK_TEACHER,
    RunRecord,
    bench_of,
    is_dev_selected,
    left_out,
    read_metrics,
    temperature_sweep,
)

SAYS = (
    "Every run found, one row each: its task, its method (a teacher's: fine-tuning), its kind, the scores of "
    "the split it was scored on, each beside the majority-class baseline (regression: the mean predictor), its "
    "batch-1 speed where a bench file timed its model, and what it started from. It neither averages seeds nor "
    "compares methods (Table 1 of the page `retort report --out` writes does); its last column says where "
    'each run is in that comparison, or why the comparison leaves it out. "dev once": the run kept its epoch on '
    "held-out training rows and scored the dev set once, on that epoch. A teacher's score within "
    f'{100 * WEAK_TEACHER:.0f} points of its baseline is marked "near the baseline": it cannot rank students.'
)
HEADERS = ["run", "task", "method", "kind", "scored on", "scores x100 (baseline)", "ms/sample b1", "train min",
           "from", "comparison view"]  # fmt: skip
SPLIT_NAMES = {"val": "held-out rows (val)", "heldout": "held-out sequences"}


def run_kind(m: dict) -> str:
    """What a run is: teacher, student (or one stage of a two-stage student), dse (a bi-encoder) or general
    (task-free distillation)."""
    cfg = m.get("config") or {}
    stage = (cfg.get("objective") or {}).get("stage")
    if m.get("kind", cfg.get("kind")) == "teacher":
        return "teacher"
    if cfg.get("dse"):
        return "dse"
    if cfg.get("general"):
        return "general"
    return f"student, {stage} stage" if stage in SKIPPED_STAGES else "student"


def method_of(m: dict) -> str:
    """A student's method (its ``--tag`` first, when it has one) and its shape; "fine-tune" for a teacher,
    trained on labels alone (no soft term, no temperature: its config's objective is the unused default)."""
    cfg = m.get("config") or {}
    if run_kind(m) == "teacher":
        return "fine-tune"
    method = (cfg.get("objective") or {}).get("method") or "kd"
    tag = cfg.get("tag")
    name = f"{tag} ({method})" if tag and tag != method else method
    student = cfg.get("student") or ""
    if cfg.get("attention") == "linear":
        student += f" linear/{cfg.get('feature_map')}"
    return f"{name}, {student.strip()}" if student.strip() else name


def scored_on(m: dict) -> tuple[str, dict]:
    """(the split the run was scored on, in words; its scores, split -> metric -> value)."""
    if m.get("dev_once"):
        return "dev once", m["dev_once"]
    best = m.get("best") or {}
    if is_dev_selected(m):
        return "dev, best epoch (dev-selected †)", best
    named = ", ".join(SPLIT_NAMES.get(s, s) for s in best)
    return (f"{named}, best epoch" if best else "nothing scored"), best


def origin(m: dict) -> str:
    """What the run started from: its teacher (a student, a bi-encoder), else its base model (a teacher)."""
    cfg = m.get("config") or {}
    if run_kind(m) == "teacher":
        return f"base: {cfg['base']}" if cfg.get("base") else "-"
    return f"teacher: {cfg['teacher']}" if cfg.get("teacher") else "-"


def summarize(folders: list[Path], records: list[RunRecord], bench: list[dict]) -> list[dict]:
    """One row per run folder in ``folders`` (read with ``records.read_metrics``), by task, teachers first; ``records``:
    the labelled runs of the method comparison among them (``records.label_runs``), ``bench``: the rows of
    bench files (``records.read_bench``)."""
    by_path = {r.path: r for r in records}
    swept = {r.path for ms in temperature_sweep(records).values() for ts in ms.values() for rs in ts.values()
             for r in rs}  # fmt: skip
    rows = []
    for folder in folders:
        record = by_path.get(folder)
        m = record.metrics if record else read_metrics(folder)
        split, scores = scored_on(m)
        wall = m.get("wall_seconds")
        rows.append({
            "run": str(folder), "task": m["task"], "kind": run_kind(m), "method": method_of(m), "scored_on": split,
            "scores": scores, "primary": m.get("primary_metric"),
            "baseline": {s: (m.get("baseline") or {}).get(s) or {} for s in scores},
            "ms_b1": bench_of(folder / "model", bench).get("ms_b1"),
            "train_minutes": wall / 60 if wall is not None else None, "from": origin(m),
            "comparison": _place(m, record, swept),
        })  # fmt: skip
    return sorted(rows, key=lambda row: (row["task"], row["kind"] != "teacher", row["run"]))


def _place(m: dict, record: RunRecord | None, swept: set[Path]) -> str:
    """Where the method comparison shows a run, or why it leaves it out."""
    why = left_out(m)
    if why or record is None:
        return f"left out: {why or 'not among the runs compared'}"
    if record.kind == "teacher":
        return f"Table 1: teacher ({record.task})"
    if record.temperature == DEFAULT_T:
        return f"Table 1: {record.label}"
    if record.path in swept:
        return f"Figure 2 only (T {record.temperature:g})"
    return (f"left out: T {record.temperature:g} (Table 1 is at T {DEFAULT_T:g}; Figure 2 needs two temperatures on a "
            "classification task)")  # fmt: skip


def common_root(rows: list[dict]) -> Path | None:
    """The deepest folder holding every run of ``rows`` (None for fewer than two runs): the page names it once
    and shows each run's path under it."""
    paths = [Path(row["run"]).absolute() for row in rows]
    if len(paths) < 2:
        return None
    same = itertools.takewhile(lambda parts: len(set(parts)) == 1, zip(*(p.parts for p in paths)))
    root = Path(*[parts[0] for parts in same] or ["/"])
    return root if all(p != root for p in paths) else root.parent


def summary_table(rows: list[dict], short: bool = True) -> tuple[list[str], list[list[str]]]:
    """The summary's headers and its rows as text (scores x100, each with its baseline in brackets; with
    ``short``, as on the page, run folders and teachers among them under their ``common_root``; the terminal
    keeps whole paths, to copy)."""
    root = common_root(rows) if short else None

    def short(path: str) -> str:
        p = Path(path).absolute()
        return str(p.relative_to(root)) if root and p.is_relative_to(root) and p != root else path

    cells = []
    for row in rows:
        ms, minutes = row["ms_b1"], row["train_minutes"]
        kind, _, model = row["from"].partition(": ")
        source = f"{kind}: {short(model)}" if model else row["from"]
        cells.append([short(row["run"]), row["task"], row["method"], row["kind"], row["scored_on"], _scores(row),
                      f"{ms:.2f}" if ms is not None else "-", f"{minutes:.1f}" if minutes is not None else "-",
                      source, row["comparison"]])  # fmt: skip
    return HEADERS, cells


def _scores(row: dict) -> str:
    """``metric value (baseline)`` for each metric of each split scored, the split named when there are several;
    a teacher's primary metric on its first split within ``WEAK_TEACHER`` of its baseline marked so (the rule
    by which Table 1 leaves a task unranked)."""
    parts = []
    for i, (split, metrics) in enumerate(row["scores"].items()):
        base = row["baseline"].get(split, {})

        def near(k: str, v: float, base=base, first=i == 0) -> bool:
            return (row["kind"] == "teacher" and first and k == row.get("primary") and _finite(base.get(k))
                    and _finite(v) and v - base[k] < WEAK_TEACHER)  # fmt: skip

        shown = ", ".join(f"{k} {100 * v:.2f}" + (f" ({100 * base[k]:.2f})" if _finite(base.get(k)) else "")
                          + (", near the baseline" if near(k, v) else "")
                          for k, v in metrics.items() if k != "score")  # fmt: skip
        parts.append(f"{split}: {shown}" if len(row["scores"]) > 1 else shown)
    return "; ".join(parts) or "-"


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
