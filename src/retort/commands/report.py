"""``retort report RUN...``: the results of run folders. With ``--out``, the evidence page (index.html,
report.md, report.json, figures, the configs: report/page.py): the summary of every run, then the method
comparison; without, the summary alone on stdout (report/summary.py; ``--markdown`` for Markdown, ``--bench``
for the speed of the models a bench file timed).
"""

from __future__ import annotations

import argparse

from retort import options


def add_parser(sub) -> None:
    """The ``report`` subcommand."""
    p = sub.add_parser("report", help="the evidence page of run folders (--out), or one table of their results")
    options.add(p, "runs", "markdown", "report_out", "bench", "reference", "curves_task", "resamples", "title", "note",
                "report_force", many=("runs", "bench"))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the page, or print the summary."""
    if args.out:
        from retort.report.page import write_report  # noqa: PLC0415  (numpy, matplotlib)

        data = write_report(args.runs, args.out, args.bench, args.reference, args.curves_task, args.resamples,
                            args.title, args.force, args.note)  # fmt: skip
        print(f"wrote {args.out}/index.html and report.md ({data['runs']} runs)")
        return 0
    from retort.report.tables import summarize_runs  # noqa: PLC0415

    print(summarize_runs(args.runs, args.markdown, args.bench))
    return 0
