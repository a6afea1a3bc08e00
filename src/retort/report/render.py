"""A page as a list of blocks (headings, paragraphs, tables, code, figures), rendered twice: as Markdown and
as one self-contained HTML document (style inline, figures beside it in ``img/``, nothing from the network).
Knows nothing of runs; ``report.page`` fills it with the evidence."""

from __future__ import annotations

import html
import re
from pathlib import Path

from retort.report.tables import table

MARKER = "retort-report"  # in every page's <head>: a folder holding one may be replaced without --force
DPI = 100  # a figure of W inches is W x 100 px: the 3-column grids (report.charts) stay inside the page
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}.n{text-align:right}img{max-width:100%}"
    "pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}figcaption{font-size:13px;color:#555}"
    "code{background:#f3f3f3;padding:0 3px}.scroll{overflow-x:auto}table.wide{font-size:12px}"
    "table.wide td,table.wide th{padding:2px 4px}.k{white-space:nowrap}"
)
WIDE = 10  # a table of this many columns or more is set smaller, so that it fits the page at 1280 px


class Page:
    """The page being written into ``out``: headings, paragraphs, tables, code and figures kept as blocks
    in order, then rendered as Markdown (``markdown``) and as self-contained HTML (``html``). Figures are
    saved into ``out/img`` when added."""

    def __init__(self, out: Path):
        self.out = out
        self.blocks: list[tuple] = []
        (out / "img").mkdir(parents=True, exist_ok=True)
        (out / "configs").mkdir(parents=True, exist_ok=True)

    def h(self, level: int, text: str) -> None:
        """Add a heading of ``level`` (1 is the title)."""
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        """Add a paragraph; inline code (`x`) and links ([a](b)) are kept in both renderings."""
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list]) -> None:
        """Add a table; cells are turned into text here."""
        self.blocks.append(("table", headers, [[str(c) for c in row] for row in rows]))

    def code(self, text: str) -> None:
        """Add a preformatted block."""
        self.blocks.append(("code", text))

    def figure(self, fig, name: str, caption: str) -> None:
        """Save a matplotlib figure as ``img/NAME`` at ``DPI``, close it and add it with its caption."""
        import matplotlib.pyplot as plt  # noqa: PLC0415

        if fig.get_layout_engine() is None:
            fig.tight_layout()
        fig.savefig(self.out / "img" / name, dpi=DPI)
        plt.close(fig)
        self.blocks.append(("img", f"img/{name}", caption))

    def markdown(self) -> str:
        """The page as Markdown (``report.md``), figures linked from ``img/``."""
        parts = []
        for b in self.blocks:
            if b[0] == "h":
                parts.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                parts.append(b[1])
            elif b[0] == "table":
                parts.append(table(b[1], [[c.replace("|", "\\|") for c in row] for row in b[2]], markdown=True))
            elif b[0] == "code":
                parts.append("```\n" + b[1] + "\n```")
            elif b[0] == "img":
                parts.append(f"![{b[2]}]({b[1]})\n\n*{b[2]}*")
        return "\n\n".join(parts) + "\n"

    def html(self, title: str) -> str:
        """The page as one HTML document (``index.html``) with its style inline and figures from ``img/``:
        nothing to fetch from the network."""
        e = html.escape
        body = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "table":
                cls = [_column_class(b[2], i) for i in range(len(b[1]))]
                head = "".join(f"<th{_column_class(b[2], i, header=True)}>{e(h)}</th>" for i, h in enumerate(b[1]))
                rows = "".join("<tr>" + "".join(f"<td{c}>{_inline(x)}</td>" for x, c in zip(row, cls)) + "</tr>"
                               for row in b[2])  # fmt: skip
                wide = ' class="wide"' if len(b[1]) >= WIDE else ""
                markup = f"<table{wide}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
                body.append(f'<div class="scroll">{markup}</div>')
            elif b[0] == "code":
                body.append(f"<pre>{e(b[1])}</pre>")
            elif b[0] == "img":
                body.append(f'<figure><img src="{e(b[1])}" alt="{e(b[2])}"><figcaption>{e(b[2])}</figcaption></figure>')
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{MARKER}">'
            f"<title>{e(title)}</title><style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


NUMBER = re.compile(r"[-+−]?[\d.,]+(%|x| ms)?")


def _column_class(rows: list[list[str]], i: int, header: bool = False) -> str:
    """The HTML class of column ``i``: numbers right-aligned (``n``), short cells (a task's name, a seed) kept
    on one line (``k``: a browser would break "STS-B" at its hyphen); a ``header`` cell may wrap (a long name
    over a column of short cells would widen the table past the page)."""
    names = ["n"] if _numeric_column(rows, i) else []
    if not header and all(len(row[i]) <= 14 for row in rows if i < len(row)):
        names.append("k")
    return f' class="{" ".join(names)}"' if names else ""


def _numeric_column(rows: list[list[str]], i: int) -> bool:
    """True when every cell of column ``i`` is numbers (with signs, %, intervals, "/" or "-" for none): the
    column is right-aligned, so digits line up; a column with words in it stays left-aligned."""
    cells = [row[i] for row in rows if i < len(row) and row[i].strip() not in ("", "-")]
    if not cells:
        return False
    return all(all(NUMBER.fullmatch(t) for t in re.split(r"[\s\[\],/±]+", c) if t) for c in cells)


def _inline(text: str) -> str:
    """Markdown's inline code (`x`) and links ([a](b)) in an otherwise escaped HTML text."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)
