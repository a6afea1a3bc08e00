"""Plain-text tables for the terminal and Markdown tables for docs: any rows, a run's metrics per split, and
one row per run folder (``summarize_runs``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from retort.report.records import read_metrics


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


def print_metrics(task: str, results: dict[str, dict[str, float]], title: str = "") -> None:
    """One row per split, one column per metric."""
    if title:
        print(title)
    if not results:
        print("(no results)")
        return
    names = list(next(iter(results.values())))
    print(table(["task", "split", *names], [[task, s, *(r[n] for n in names)] for s, r in results.items()]))


def summarize_runs(run_dirs, markdown: bool = False) -> str:
    """One row per run folder (its ``metrics.json``): task, kind, method, student, best dev metrics, time.
    A folder without ``metrics.json`` shows as unfinished; what is not a folder is left out."""
    rows = []
    for d in run_dirs:
        if not Path(d).is_dir():
            continue
        m = read_metrics(Path(d), missing_ok=True)
        if m is None:
            rows.append([str(d), "-", "-", "-", "(no metrics.json: unfinished?)", "-", "-"])
            continue
        rows.append(_summary_row(str(d), m))
    return table(["run", "task", "method", "student", "best dev", "train min", "samples/s"], rows, markdown=markdown)


def _summary_row(run: str, m: dict) -> list[str]:
    """The summary table's row of one finished run, from its metrics."""
    cfg = m.get("config", {})
    method = cfg.get("objective", {}).get("method", "-") if m.get("kind") == "distill" else "fine-tune"
    student = cfg.get("student", "-") if m.get("kind") == "distill" else "-"
    if cfg.get("attention") == "linear":
        student += f" linear/{cfg.get('feature_map')}"
    if cfg.get("dse"):
        student += " DSE"
    best = "; ".join(
        f"{s} " + ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k != "score") for s, r in m["best"].items()
    )
    return [run, m["task"], method, student, best, f"{m['wall_seconds'] / 60:.1f}", f"{m['train_samples_per_s']:.1f}"]
