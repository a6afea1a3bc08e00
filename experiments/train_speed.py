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

from harness import Option, add, command, parser, print_table

from retort.machine import cpu_label

OWN_OPTIONS = (
    Option("--old-src", "the src/ folder of the checkout to compare against", metavar="DIR"),
    Option("--rows", "STS-B training rows of every run", type=int, default=1600, low=1),
    Option("--eval-rows", "dev rows of every evaluation", type=int, default=300, low=1),
)


def run(name: str, args: list[str], src: str | None, work: Path) -> dict:
    """``retort ARGS`` with the code of ``src`` (None: this checkout) in a fresh folder under ``work``;
    its speed, wall time and dev Pearson per epoch."""
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


def runs_of(a: argparse.Namespace) -> list[tuple[str, list[str], str | None]]:
    """(name, retort arguments, code) of the five runs, in the order they run."""
    common = dict(task="STS-B", glue_dir=a.glue_dir, threads=a.threads, max_train_samples=a.rows,
                  max_eval_samples=a.eval_rows, save_every=100)  # fmt: skip
    teacher = command("teacher", **common, epochs=1)
    student = command("distill", **common, teacher=a.teacher, student="3x384", method="multilevel", epochs=2)
    return [("teacher, old code", teacher, a.old_src), ("teacher, new code", teacher, None),
            ("student, old code", student, a.old_src),
            ("student, new code, no cache", command(*student, cache_teacher="none"), None),
            ("student, new code, cache all", command(*student, cache_teacher="all"), None)]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Make the five runs in a temporary folder (removed after), print the table, write the JSON."""
    p = parser(__doc__)
    add(
        p,
        "old_src",
        "teacher",
        "glue_dir",
        "rows",
        "eval_rows",
        "threads",
        "out_json",
        own=OWN_OPTIONS,
        required=["old_src", "teacher", "glue_dir"],
        defaults={"threads": 2, "out_json": "train_speed.json"},
    )
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="retort-speed-"))
    try:
        rows = [run(name, args, src, work) for name, args, src in runs_of(a)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = {"teacher": rows[0], "student": rows[2]}
    print(f"\n{cpu_label()}, {a.threads} threads, STS-B {a.rows} training rows\n")
    for r in rows:
        b = base[r["name"].split(",")[0]]
        r["speedup_steps"] = r["samples_per_s"] / b["samples_per_s"]
        r["speedup_wall"] = b["wall_seconds"] / r["wall_seconds"]
    print_table(
        ["run", "samples/s (steps)", "step speed-up", "wall s", "wall speed-up", "dev Pearson per epoch"],
        [
            [
                r["name"],
                f"{r['samples_per_s']:.1f}",
                f"{r['speedup_steps']:.2f}x",
                f"{r['wall_seconds']:.0f}",
                f"{r['speedup_wall']:.2f}x",
                ", ".join(f"{x:.4f}" for x in r["dev_pearson"]),
            ]
            for r in rows
        ],
    )
    record = {"cpu": cpu_label(), "threads": a.threads, "rows": a.rows, "runs": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(record, indent=2))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
