"""A narrow student (default 4x312, TinyBERT-4's width with 12 heads) from four starts, each then
task-distilled the same way on STS-B: random weights, width pruning of the teacher's layers
(``--student-init prune``), general distillation on a corpus from random weights, and both (pruned, then
general, then task). Resumable (``experiments/_runs.py``); prints a table and writes JSON.

    python experiments/narrow.py --teacher runs/demo/teacher/model --glue-dir ../shared/data/glue \\
        --corpus ../shared/data/corpus --out runs/narrow --json docs/data/narrow.json

Every task run: multilevel, --epochs 3, 2 threads, the teacher's outputs cached, the epoch kept on 10% of
the training rows (``--val-split 0.1``), then the GLUE dev set scored once on the kept model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runs import retort  # noqa: E402

from retort.machine import cpu_label  # noqa: E402
from retort.report.tables import table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", default="runs/narrow")
    p.add_argument("--student", default="4x312")
    p.add_argument("--heads", default="12")
    p.add_argument("--intermediate", default="1200")
    p.add_argument("--corpus-sequences", type=int, default=8000)
    p.add_argument("--general-epochs", type=int, default=1)
    p.add_argument("--task-epochs", type=int, default=3)
    p.add_argument("--threads", default="2")
    p.add_argument("--starts", nargs="+", default=["prune", "prune+general", "random", "general"])
    p.add_argument("--json", default=None)
    a = p.parse_args()
    out = Path(a.out)
    shape = ["--student", a.student, "--student-heads", a.heads, "--student-intermediate", a.intermediate]
    common = ["--teacher", a.teacher, *shape, "--method", "multilevel", "--threads", a.threads]
    rows = []
    for start in a.starts:
        init = "prune" if start.startswith("prune") else "random"
        general = None
        if "general" in start:
            g_out = out / f"general-{init}-{a.student}"
            general = retort(["distill", "--general", "--corpus", a.corpus, *common, "--student-init", init,
                              "--corpus-sequences", str(a.corpus_sequences), "--epochs", str(a.general_epochs),
                              "--batch-size", "32", "--lr", "1e-4", "--eval-every", "100"], g_out)  # fmt: skip
            init = str(g_out / "model")
        m = retort(["distill", "--task", "STS-B", "--glue-dir", a.glue_dir, *common, "--student-init", init,
                    "--epochs", str(a.task_epochs), "--cache-teacher", "all", "--val-split", "0.1"],
                   out / f"task-{start}")  # fmt: skip
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
    print(table(["start", "general tokens", "general min", "task min", "val Pearson (kept)", "dev Pearson (once)"],
                [[r["start"], f"{r['general_tokens']:,}", f"{r['general_seconds'] / 60:.1f}",
                  f"{r['task_seconds'] / 60:.1f}", f"{max(r['val_pearson_by_epoch']):.4f}",
                  f"{r['dev_pearson_once']:.4f}"] for r in rows]))  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps({"cpu": cpu_label(), "args": vars(a), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
