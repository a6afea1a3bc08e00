"""Plain-text tables for the terminal and Markdown tables for docs: any rows, a run's metrics per split, and
the summary of run folders (``summarize_runs``, its rows from ``report.summary``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from retort.errors import RetortError
from retort.report.records import METRICS_FILE, find_runs, holds_unfinished_run, label_runs, load_run, read_bench
from retort.report.summary import HEADERS, SAYS, summarize, summary_table


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


def summarize_runs(run_dirs, markdown: bool = False, bench_files: list[str] | None = None) -> str:
    """The summary (``report.summary``: one row per run in or below each folder given, what it is, its scores
    beside their baselines, its speed from ``bench_files``, where it came from, where the method comparison
    shows it or why not) under the sentence that says what it shows. A folder that holds a run's files but no
    ``metrics.json`` shows as unfinished, one that holds no run at all (an empty folder) says so; a file is
    left out (``runs/*``), a missing path refused. A damaged ``metrics.json`` is one line naming it
    (``records.read_metrics``); no run in any folder is an error."""
    folders, placeholders, empty = [], [], []
    for d in map(Path, run_dirs):
        if not d.exists():
            raise RetortError(f"{d}: no such run folder")
        if not d.is_dir():
            continue
        runs = find_runs([str(d)], empty_ok=True)
        folders += runs
        if not runs:
            unfinished = holds_unfinished_run(d)
            placeholders.append([str(d), "-", "-", "-", "(no metrics.json: unfinished?)" if unfinished else
                                 "(holds no run)", *["-"] * (len(HEADERS) - 5)])  # fmt: skip
            if not unfinished:
                empty.append(d)
    if not folders and placeholders and len(empty) == len(placeholders):
        raise RetortError(f"{empty[0]}: holds no run (no {METRICS_FILE} in it or below it)")
    folders = list(dict.fromkeys(folders))
    rows = summarize(folders, label_runs([load_run(f) for f in folders]), read_bench(bench_files or []))
    return SAYS + "\n\n" + table(HEADERS, summary_table(rows, short=False)[1] + placeholders, markdown=markdown)
