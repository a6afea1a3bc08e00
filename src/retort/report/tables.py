"""Plain-text tables for the terminal and Markdown tables for docs: any rows, a run's metrics per split, and
one row per run folder (``summarize_runs``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from retort.errors import RetortError
from retort.report.records import METRICS_FILE, find_runs, holds_unfinished_run, read_metrics


def table(headers: Sequence[str], rows: Sequence[Sequence], markdown: bool = False) -> str:
    """A fixed-width text table (or a Markdown one). Floats print with 4 decimals."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    if markdown:
        lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4f}"
    return "-" if x is None else str(x)


def print_metrics(
    task: str, results: dict[str, dict[str, float]], title: str = "", baseline: dict | None = None
) -> None:
    """One row per split, one column per metric; with ``baseline`` (``metrics.baseline`` per split) a row
    beside each split for predicting without the text."""
    if title:
        print(title)
    if not results:
        print("(no results)")
        return
    names = list(next(iter(results.values())))
    rows = []
    for s, r in results.items():
        rows.append([task, s, *(r[n] for n in names)])
        if baseline and s in baseline:
            rows.append([task, f"{s}: baseline", *(baseline[s].get(n, "") for n in names)])
    print(table(["task", "split", *names], rows))


def summarize_runs(run_dirs, markdown: bool = False) -> str:
    """One row per run (its ``metrics.json``) in or below each folder given: task, kind, method, student,
    best dev metrics, time. A folder that holds a run's files but no ``metrics.json`` shows as unfinished,
    one that holds no run at all (an empty folder) says so; a file is left out (``runs/*``), a missing path
    refused. A damaged ``metrics.json`` is one line naming it (``records.read_metrics``); no run in any
    folder is an error."""
    rows, empty = [], []
    for d in map(Path, run_dirs):
        if not d.exists():
            raise RetortError(f"{d}: no such run folder")
        if not d.is_dir():
            continue
        runs = find_runs([str(d)], empty_ok=True)
        rows += [_summary_row(str(r), read_metrics(r)) for r in runs]
        if not runs:
            unfinished = holds_unfinished_run(d)
            rows.append([str(d), "-", "-", "-", "(no metrics.json: unfinished?)" if unfinished else "(holds no run)",
                         "-", "-"])  # fmt: skip
            if not unfinished:
                empty.append(d)
    if rows and len(empty) == len(rows):
        raise RetortError(f"{empty[0]}: holds no run (no {METRICS_FILE} in it or below it)")
    return table(["run", "task", "method", "student", "best dev", "train min", "samples/s"], rows, markdown=markdown)


def _summary_row(run: str, m: dict) -> list[str]:
    """The summary table's row of one finished run, from its (checked) metrics."""
    cfg = m.get("config") or {}
    method = (cfg.get("objective") or {}).get("method", "-") if m.get("kind") == "distill" else "fine-tune"
    student = (cfg.get("student") or "-") if m.get("kind") == "distill" else "-"
    if cfg.get("attention") == "linear":
        student += f" linear/{cfg.get('feature_map')}"
    if cfg.get("dse"):
        student += " DSE"
    best = "; ".join(
        f"{s} " + ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k != "score") for s, r in m["best"].items()
    )
    minutes = f"{m['wall_seconds'] / 60:.1f}" if m.get("wall_seconds") is not None else "-"
    speed = f"{m['train_samples_per_s']:.1f}" if m.get("train_samples_per_s") is not None else "-"
    return [run, m["task"], method, student, best, minutes, speed]
