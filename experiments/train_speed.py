"""Training speed, side by side in one session on one machine: retort's training loop as it is against
another checkout of retort (``--old-src``, e.g. a ``git worktree`` of an earlier commit), on the same
data, teacher and settings. A time is only true for the machine it was measured on, so the table gives
ratios measured together, and names the CPU.

    git worktree add /tmp/old 9c9ee94
    python experiments/train_speed.py --old-src /tmp/old/src --teacher runs/demo/teacher/model \\
        --glue-dir ../shared/data/glue --out docs/data/train_speed.json

Runs (STS-B, --rows training rows, 2 threads): the teacher's fine-tuning, one epoch, old and new code;
the demo's student (3x384, multilevel), two epochs, old code, new code without the teacher-output cache,
and new code with ``--cache-teacher all`` (the second epoch reads the teacher's outputs back).
Samples/s counts the training steps only; wall includes evaluation and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from retort.machine import cpu_label


def run(name: str, args: list[str], src: str | None, work: Path) -> dict:
    out = work / name
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RETORT_CACHE": str(work / f"cache-{name}")}
    if src:
        env["PYTHONPATH"] = src  # that checkout's retort shadows the installed one
    cmd = [sys.executable, "-m", "retort", *args, "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{name}: failed\n{proc.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    row = {
        "name": name,
        "code": src or "this checkout",
        "command": " ".join(args),
        "samples_per_s": m["train_samples_per_s"],
        "train_seconds": m["train_seconds"],
        "wall_seconds": m["wall_seconds"],
        "dev_pearson": [e["results"]["dev"]["pearson"] for e in m["evals"]],
    }
    print(f"{name}: {row['samples_per_s']:.1f} samples/s, {row['wall_seconds']:.0f}s wall", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old-src", required=True, help="the src/ folder of the checkout to compare against")
    p.add_argument("--teacher", required=True, help="a fine-tuned STS-B teacher folder (for the student runs)")
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--rows", type=int, default=1600)
    p.add_argument("--eval-rows", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="train_speed.json")
    a = p.parse_args()
    common = ["--task", "STS-B", "--glue-dir", a.glue_dir, "--threads", str(a.threads)]
    common += ["--max-train-samples", str(a.rows), "--max-eval-samples", str(a.eval_rows), "--save-every", "100"]
    teacher = ["teacher", *common, "--epochs", "1"]
    student = ["distill", *common, "--teacher", a.teacher, "--student", "3x384", "--method", "multilevel"]
    student += ["--epochs", "2"]
    work = Path(tempfile.mkdtemp(prefix="retort-speed-"))
    rows = []
    try:
        rows.append(run("teacher, old code", teacher, a.old_src, work))
        rows.append(run("teacher, new code", teacher, None, work))
        rows.append(run("student, old code", student, a.old_src, work))
        rows.append(run("student, new code, no cache", [*student, "--cache-teacher", "none"], None, work))
        rows.append(run("student, new code, cache all", [*student, "--cache-teacher", "all"], None, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = {"teacher": rows[0], "student": rows[2]}
    print(f"\n{cpu_label()}, {a.threads} threads, STS-B {a.rows} training rows\n")
    print("| run | samples/s (steps) | step speed-up | wall s | wall speed-up | dev Pearson per epoch |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        b = base[r["name"].split(",")[0]]
        r["speedup_steps"] = r["samples_per_s"] / b["samples_per_s"]
        r["speedup_wall"] = b["wall_seconds"] / r["wall_seconds"]
        dev = ", ".join(f"{x:.4f}" for x in r["dev_pearson"])
        print(
            f"| {r['name']} | {r['samples_per_s']:.1f} | {r['speedup_steps']:.2f}x | {r['wall_seconds']:.0f} | "
            f"{r['speedup_wall']:.2f}x | {dev} |"
        )
    record = {"cpu": cpu_label(), "threads": a.threads, "rows": a.rows, "runs": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(record, indent=2))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
