"""Plain-text tables for the terminal and Markdown tables for docs."""

from __future__ import annotations

from collections.abc import Sequence


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
