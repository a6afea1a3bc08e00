"""Training throughput on STS-B: teacher fine-tuning and the distillation step, with and without
length-grouped batches (dynamic padding is on in both). Samples per second counts training steps
only (forward, backward, optimizer), not evaluation.

    python experiments/throughput.py --glue-dir ../shared/data/glue --teacher runs/demo/teacher/model

Writes OUT/throughput.json and prints a Markdown table. A measurement whose run folder is finished is read
back, not made again (remove OUT to measure anew).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness import Option, Run, add, parser, print_table

SAMPLES = Option("--samples", "training rows per measurement", type=int, default=2000, low=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = parser(__doc__)
    add(
        p,
        "glue_dir",
        "teacher",
        "out",
        SAMPLES,
        "threads",
        "train_batch_size",
        "student",
        required=["glue_dir", "teacher"],
        defaults={"out": "runs/throughput", "threads": 2, "train_batch_size": 16},
    )
    return p.parse_args(argv)


def runs_of(args) -> list[tuple[str, bool, Run]]:
    """(kind, length-grouped, run) of the four measurements: teacher and distill, grouped and random."""
    runs = []
    for kind in ("teacher", "distill"):
        for grouped in (True, False):
            run = Run.of(Path(args.out) / f"{kind}-{'grouped' if grouped else 'random'}", kind, task="STS-B",
                         glue_dir=args.glue_dir, epochs=1, max_train_samples=args.samples, max_eval_samples=64,
                         threads=args.threads, batch_size=args.batch_size, save_every=1000000)  # fmt: skip
            if kind == "distill":
                run = run.also(teacher=args.teacher, student=args.student)
            runs.append((kind, grouped, run if grouped else run.also("--no-group-by-length")))
    return runs


def main(argv: list[str] | None = None) -> int:
    """Make the four measurements, write OUT/throughput.json and print the table."""
    args = parse_args(argv)
    out = Path(args.out)
    rows, record = [], []
    for kind, grouped, run in runs_of(args):
        m = run.make()
        r = {"kind": kind, "length_grouped": grouped, "samples": args.samples, "batch_size": args.batch_size,
             "threads": m["threads"], "train_seconds": m["train_seconds"], "samples_per_s": m["train_samples_per_s"],
             "pad_fraction": m["pad_fraction"]}  # fmt: skip
        record.append(r)
        rows.append([kind if kind == "teacher" else f"distill {args.student} (teacher fwd + student step)",
                     "yes" if grouped else "no", f"{r['samples_per_s']:.1f}", f"{100 * r['pad_fraction']:.1f}%",
                     f"{r['train_seconds']:.1f}"])  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(record, indent=2))
    print_table(["step", "length-grouped", "samples/s", "padding", "seconds"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
