"""A narrow student (default 4x312, TinyBERT-4's width with 12 heads) from four starts, each then
task-distilled the same way on STS-B: random weights, width pruning of the teacher's layers
(``--student-init prune``), general distillation on a corpus from random weights, and both (pruned, then
general, then task). Resumable (``experiments/harness.py``); prints a table and writes JSON.

    python experiments/narrow.py --teacher runs/demo/teacher/model --glue-dir ../shared/data/glue \\
        --corpus ../shared/data/corpus --out runs/narrow --json docs/data/narrow.json

Every task run: multilevel, --epochs 3, 2 threads, the teacher's outputs cached, the epoch kept on 10% of
the training rows (``--val-split 0.1``), then the GLUE dev set scored once on the kept model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import Option, Run, add, number_text, parser, print_table

from retort.machine import cpu_label

HEADS = Option("--heads", "attention heads of the student", default="12", type=number_text)
INTERMEDIATE = Option("--intermediate", "MLP size of the student", default="1200", type=number_text)
GENERAL_EPOCHS = Option("--general-epochs", "epochs of general distillation", type=int, default=1, low=1)
TASK_EPOCHS = Option("--task-epochs", "epochs of task distillation", type=int, default=3, low=1)
STARTS = Option("--starts", "where the student starts", default=["prune", "prune+general", "random", "general"],
                choices=("prune", "prune+general", "random", "general"))  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = parser(__doc__)
    add(p, "teacher", "glue_dir", "corpus", "out", "student", HEADS, INTERMEDIATE, "corpus_sequences", GENERAL_EPOCHS,
        TASK_EPOCHS, "threads", STARTS, "json", required=["teacher", "glue_dir", "corpus"], many=["starts"],
        defaults={"out": "runs/narrow", "student": "4x312", "threads": 2})  # fmt: skip
    return p.parse_args(argv)


def runs_of(a: argparse.Namespace, start: str) -> tuple[Run | None, Run]:
    """The runs of one start as data: its general-distillation run (None without one) and its task run."""
    out = Path(a.out)
    common = dict(teacher=a.teacher, student=a.student, student_heads=a.heads, student_intermediate=a.intermediate,
                  method="multilevel", threads=a.threads)  # fmt: skip
    init = "prune" if start.startswith("prune") else "random"
    general = None
    if "general" in start:
        general = Run.of(out / f"general-{init}-{a.student}", "distill", "--general", corpus=a.corpus, **common,
                         student_init=init, corpus_sequences=a.corpus_sequences, epochs=a.general_epochs,
                         batch_size=32, lr="1e-4", eval_every=100)  # fmt: skip
        init = str(general.model)
    task = Run.of(out / f"task-{start}", "distill", task="STS-B", glue_dir=a.glue_dir, **common, student_init=init,
                  epochs=a.task_epochs, cache_teacher="all", val_split="0.1")  # fmt: skip
    return general, task


def main(argv: list[str] | None = None) -> None:
    """Train every start's runs unless done, print the table, write the JSON."""
    a = parse_args(argv)
    rows = []
    for start in a.starts:
        general_run, task_run = runs_of(a, start)
        general = general_run.make() if general_run else None
        m = task_run.make()
        val = [e["results"]["val"]["pearson"] for e in m["evals"]]
        rows.append({
            "start": start,
            "general_tokens": general["tokens_seen"] if general else 0,
            "general_seconds": general["wall_seconds"] if general else 0,
            "task_seconds": m["wall_seconds"],
            "val_pearson_by_epoch": val,
            "kept_step": m["best_step"],
            "dev_pearson_once": m["dev_once"]["dev"]["pearson"],
            "dev_spearman_once": m["dev_once"]["dev"]["spearman"],
            "parameters": m["parameters"],
        })  # fmt: skip
        print(f"{start}: val Pearson by epoch {val}, dev Pearson once {rows[-1]['dev_pearson_once']:.4f}", flush=True)
    print(f"\n{a.student} student on STS-B ({cpu_label()})")
    print_table(["start", "general tokens", "general min", "task min", "val Pearson (kept)", "dev Pearson (once)"],
                [[r["start"], f"{r['general_tokens']:,}", f"{r['general_seconds'] / 60:.1f}",
                  f"{r['task_seconds'] / 60:.1f}", f"{max(r['val_pearson_by_epoch']):.4f}",
                  f"{r['dev_pearson_once']:.4f}"] for r in rows], markdown=False)  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps({"cpu": cpu_label(), "args": vars(a), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
