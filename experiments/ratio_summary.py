"""A student's share of its teacher's dev score and its speed-ups, from committed JSONs, as one summary JSON.

The README quotes ratios (a share of the teacher's score, a speed-up) that no single record holds: this
command reads the teacher's run metrics (its dev score scored once), the student's ``retort eval --json``,
its int8 export record and one ``retort bench --json`` run, and writes what the README's registry points at.

    python experiments/ratio_summary.py --teacher-metrics docs/data/mpnet-stsb-teacher-metrics.json \\
        --student-eval docs/data/mpnet-stsb-minilm3-dev.json \\
        --student-export docs/data/mpnet-stsb-minilm3-int8-export.json \\
        --bench docs/data/mpnet-stsb-minilm3-bench.json \\
        --student /work/models/mpnet-stsb-minilm3-more/model --student-int8 /work/models/export/minilm3-int8 \\
        --about "..." --out docs/data/mpnet-stsb-minilm3-summary.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _read(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"ratio_summary: {path}: {e}")


def summary(teacher: dict, student: dict, export: dict, bench: dict, student_model: str, student_int8: str,
            metric: str = "pearson") -> dict:  # fmt: skip
    """The shares of the teacher's dev ``metric`` and the batch-1 speed-ups of one bench run."""
    runs = {r["model"]: r["latency"][0] for r in bench["runs"]}
    for name in (student_model, student_int8):
        if name not in runs:
            sys.exit(f"ratio_summary: {name} is not a model of the bench run ({', '.join(runs)})")
    t = teacher["dev_once"]["dev"][metric]
    s = student["results"]["dev"][metric]
    torch_run, int8_run = runs[student_model], runs[student_int8]
    return {
        f"teacher_dev_{metric}": t,
        f"student_dev_{metric}": s,
        f"student_int8_dev_{metric}": export["evaluation"]["export"]["dev"][metric],
        f"share_of_teacher_{metric}": s / t,
        "speedup_b1": {
            "pytorch_vs_pytorch": torch_run["speedup_same_engine"],
            "pytorch_rounds": torch_run["rounds_speedup_vs_first"],
            "int8_vs_int8": int8_run["speedup_same_engine"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Read the four JSONs, write the summary, print it."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher-metrics", required=True, help="the teacher run's metrics.json (with dev_once)")
    p.add_argument("--student-eval", required=True, help="retort eval --json of the student on dev")
    p.add_argument("--student-export", required=True, help="the student's int8 export record")
    p.add_argument("--bench", required=True, help="retort bench --json: teacher first, both backends")
    p.add_argument("--student", required=True, help="the student's PyTorch folder as the bench run names it")
    p.add_argument("--student-int8", required=True, help="the student's int8 export as the bench run names it")
    p.add_argument("--metric", default="pearson", help="the dev metric (default pearson)")
    p.add_argument("--about", default="", help="one line on what the numbers are")
    p.add_argument("--out", required=True, help="the summary JSON to write")
    a = p.parse_args(argv)
    out = {"about": a.about, **summary(_read(a.teacher_metrics), _read(a.student_eval), _read(a.student_export),
                                       _read(a.bench), a.student, a.student_int8, a.metric)}  # fmt: skip
    tmp = Path(a.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(a.out)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
