"""Training throughput on STS-B: teacher fine-tuning and the distillation step, with and without
length-grouped batches (dynamic padding is on in both). Samples per second counts training steps
only (forward, backward, optimizer), not evaluation.

    python experiments/throughput.py --glue-dir ../shared/data/glue --teacher runs/demo/teacher/model

Writes OUT/throughput.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from retort.report.tables import table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--teacher", required=True, help="fine-tuned STS-B teacher folder")
    p.add_argument("--out", default="runs/throughput")
    p.add_argument("--samples", type=int, default=2000, help="training rows per measurement")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--student", default="3x384")
    args = p.parse_args()
    out = Path(args.out)
    rows, record = [], []
    for kind in ("teacher", "distill"):
        for grouped in (True, False):
            run = out / f"{kind}-{'grouped' if grouped else 'random'}"
            cmd = [
                sys.executable,
                "-m",
                "retort",
                kind,
                "--task",
                "STS-B",
                "--glue-dir",
                args.glue_dir,
                "--out",
                str(run),
                "--epochs",
                "1",
                "--max-train-samples",
                str(args.samples),
                "--max-eval-samples",
                "64",
                "--threads",
                str(args.threads),
                "--batch-size",
                str(args.batch_size),
                "--save-every",
                "1000000",
                "--no-progress",
            ]
            if kind == "distill":
                cmd += ["--teacher", args.teacher, "--student", args.student]
            if not grouped:
                cmd += ["--no-group-by-length"]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            m = json.loads((run / "metrics.json").read_text())
            r = {
                "kind": kind,
                "length_grouped": grouped,
                "samples": args.samples,
                "batch_size": args.batch_size,
                "threads": m["threads"],
                "train_seconds": m["train_seconds"],
                "samples_per_s": m["train_samples_per_s"],
                "pad_fraction": m["pad_fraction"],
            }
            record.append(r)
            rows.append(
                [
                    kind if kind == "teacher" else f"distill {args.student} (teacher fwd + student step)",
                    "yes" if grouped else "no",
                    f"{r['samples_per_s']:.1f}",
                    f"{100 * r['pad_fraction']:.1f}%",
                    f"{r['train_seconds']:.1f}",
                ]
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(record, indent=2))
    print(table(["step", "length-grouped", "samples/s", "padding", "seconds"], rows, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
