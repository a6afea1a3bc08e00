"""Fine-tune the teacher on each GLUE task present here, one after another, and tabulate dev results.

Each task runs ``retort teacher`` in its own process; a finished task is skipped and an interrupted
one resumes from its checkpoint, so the script can be stopped and started again at any time.

    python experiments/glue_teachers.py --glue-dir ../shared/data/glue --out runs/teachers \
        --tasks STS-B CoLA MRPC RTE WNLI SST-2 MNLI

Writes OUT/summary.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _runs import retort

from retort.report.tables import table

# epochs per task: small sets get more passes, the two large ones fewer (2-core CPU budget)
EPOCHS = {"STS-B": 3, "CoLA": 3, "MRPC": 3, "RTE": 3, "WNLI": 3, "SST-2": 1, "MNLI": 1, "QNLI": 1, "QQP": 1}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--out", default="runs/teachers")
    p.add_argument("--tasks", nargs="+", default=["STS-B", "CoLA", "MRPC", "RTE", "WNLI", "SST-2", "MNLI"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--val-split", help="keep the epoch on these held-out training rows (N or a fraction); dev once")
    p.add_argument("--base", help="base model (default: retort's, all-MiniLM-L6-v2)")
    p.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="TASK=DIR",
        help="take a finished run from DIR instead of training (e.g. the demo's STS-B teacher)",
    )
    args = p.parse_args()
    reuse = dict(r.split("=", 1) for r in args.reuse)
    out = Path(args.out)
    summary = {}
    for task in args.tasks:
        run = Path(reuse.get(task, out / task))
        if task in reuse:
            m = json.loads((run / "metrics.json").read_text())
        else:
            extra = ["--base", args.base] if args.base else []
            if args.max_train_samples:
                extra += ["--max-train-samples", str(args.max_train_samples)]
            if args.val_split:
                extra += ["--val-split", args.val_split]
            m = retort(
                [
                    "teacher",
                    "--task",
                    task,
                    "--glue-dir",
                    args.glue_dir,
                    "--epochs",
                    str(EPOCHS[task]),
                    "--threads",
                    str(args.threads),
                    *extra,
                ],
                run,
                quiet=False,
            )
        summary[task] = {
            "run": str(run),
            "best": m.get("dev_once", m["best"]),
            "selected_on": "held-out training rows" if "dev_once" in m else "dev",
            "best_step": m["best_step"],
            "epochs": m["epochs"],
            "train_examples": m["train_examples"],
            "wall_seconds": m["wall_seconds"],
            "train_samples_per_s": m["train_samples_per_s"],
        }
        (out / "summary.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    rows = []
    for task, s in summary.items():
        for split, r in s["best"].items():
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k != "score")
            rows.append(
                [
                    task,
                    split,
                    metrics,
                    s["train_examples"],
                    s["epochs"],
                    f"{s['wall_seconds'] / 60:.1f}",
                    f"{s['train_samples_per_s']:.1f}",
                ]
            )
    print(
        table(["task", "dev split", "metrics", "train rows", "epochs", "train min", "samples/s"], rows, markdown=True)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
