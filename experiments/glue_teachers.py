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

from harness import Option, Run, add, check_options, parser, per_task, print_table

# epochs per task: small sets get more passes, the two large ones fewer (2-core CPU budget)
EPOCHS = {"STS-B": 3, "CoLA": 3, "MRPC": 3, "RTE": 3, "WNLI": 3, "SST-2": 1, "MNLI": 1, "QNLI": 1, "QQP": 1}
VAL_SPLIT = Option("--val-split", "keep the epoch on these held-out training rows (N or a fraction); dev once")
REUSE = Option("--reuse", "take a finished run from DIR instead of training (e.g. the demo's STS-B teacher)",
               repeat=True, metavar="TASK=DIR")  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; every task to train has its data (checked before any run)."""
    p = parser(__doc__)
    add(p, "glue_dir", "out", "tasks", "threads", "max_train_samples", VAL_SPLIT, "base", REUSE,
        required=["glue_dir"], many=["tasks"],
        defaults={"out": "runs/teachers", "tasks": ["STS-B", "CoLA", "MRPC", "RTE", "WNLI", "SST-2", "MNLI"],
                  "threads": 2})  # fmt: skip
    args = p.parse_args(argv)
    check_options(p, args, [t for t in args.tasks if t not in per_task(args.reuse)])
    return args


def teacher_run(args, task: str) -> Run:
    """The teacher of one task as data: ``retort teacher`` with the task's epochs, its output shown."""
    run = Run.of(Path(args.out) / task, "teacher", task=task, glue_dir=args.glue_dir, epochs=EPOCHS[task],
                 threads=args.threads, base=args.base, max_train_samples=args.max_train_samples,
                 val_split=args.val_split)  # fmt: skip
    return Run(run.out, run.args, quiet=False)


def summarize(run: Path, m: dict) -> dict:
    """What the summary keeps of one teacher: its scores (dev once if it was kept on held-out rows), how
    it was selected, its size and speed."""
    return {"run": str(run), "best": m.get("dev_once", m["best"]),
            "selected_on": "held-out training rows" if "dev_once" in m else "dev", "best_step": m["best_step"],
            "epochs": m["epochs"], "train_examples": m["train_examples"], "wall_seconds": m["wall_seconds"],
            "train_samples_per_s": m["train_samples_per_s"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Train (or reuse) every task's teacher, writing OUT/summary.json after each; print the table."""
    args = parse_args(argv)
    reuse = per_task(args.reuse)
    out = Path(args.out)
    summary = {}
    for task in args.tasks:
        if task in reuse:
            run, m = Path(reuse[task]), json.loads((Path(reuse[task]) / "metrics.json").read_text())
        else:
            teacher = teacher_run(args, task)
            run, m = teacher.out, teacher.make()
        summary[task] = summarize(run, m)
        (out / "summary.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    rows = []
    for task, s in summary.items():
        for split, r in s["best"].items():
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k != "score")
            rows.append([task, split, metrics, s["train_examples"], s["epochs"], f"{s['wall_seconds'] / 60:.1f}",
                         f"{s['train_samples_per_s']:.1f}"])  # fmt: skip
    print_table(["task", "dev split", "metrics", "train rows", "epochs", "train min", "samples/s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
