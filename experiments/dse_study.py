"""Issue #5's study: DSE bi-encoders against the cross-encoder teacher and a 3x384 cross-encoder student.

Quality: for each task, the teacher (TEACHERS/TASK), the multilevel 3x384 cross-encoder student
(COMPARE/TASK/multilevel, from compare_methods.py; trained here if missing) and a 3x384 DSE bi-encoder
(trained here) are scored on dev; the table gives DSE's relative degradation against the teacher.

Speed: one query against N candidates (sentences from STS-B and MNLI dev), on ``--threads`` threads:
the teacher cross-encoder scores every (query, candidate) pair in batches of ``--batch-size``; DSE
embeds the query once and scores it against the precomputed candidate matrix with its pair head.
Candidate embedding time is reported separately (it is paid once, offline).

    python experiments/dse_study.py --glue-dir ../shared/data/glue --teachers runs/teachers \
        --compare runs/compare --out runs/dse --tasks STS-B MRPC RTE MNLI --epochs 2 \
        --epochs-for STS-B=3 --cap MNLI=10000   # the budgets of compare_methods.py, whose students it reuses

Writes OUT/dse.json and prints two Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from harness import Option, Run, add, parser, per_task, print_table

COMPARE = Option("--compare", "compare_methods.py's OUT: the cross-encoder students (trained here if missing)",
                 default="runs/compare", metavar="DIR")  # fmt: skip
CANDIDATES = Option("--candidates", "candidate counts timed", type=int, default=[1000, 10000], low=1)
PART = Option("--part", "what to measure", default="all", choices=("all", "quality", "timing"))


def quality(args) -> tuple[list[list], dict]:
    """Teacher, cross-encoder student and DSE bi-encoder on each task's dev set (the students trained unless
    done); the table's rows and the record, with DSE's relative degradation against the teacher."""
    rows = []
    record = {}
    for task in args.tasks:
        teacher = Path(args.teachers) / task
        common = dict(task=task, glue_dir=args.glue_dir, teacher=str(teacher / "model"), student=args.student,
                      epochs=per_task(args.epochs_for).get(task, str(args.epochs)), seed=args.seed,
                      threads=args.threads, max_train_samples=per_task(args.cap).get(task))  # fmt: skip
        cross = Run.of(Path(args.compare) / task / "multilevel", "distill", **common, method="multilevel").make()
        dse = Run.of(Path(args.out) / task / f"dse-{args.student}", "dse", "train", **common).make()
        t = json.loads((teacher / "metrics.json").read_text())["best"]
        score = lambda best: float(np.mean([r["score"] for r in best.values()]))  # noqa: E731
        st, sc, sd = score(t), score(cross["best"]), score(dse["best"])
        record[task] = {"teacher": t, "cross_student": cross["best"], "dse": dse["best"],
                        "dse_train_seconds": dse["wall_seconds"], "degradation": 1 - sd / st}  # fmt: skip
        rows.append([task, st, sc, sd, f"{100 * (1 - sd / st):.1f}%"])
    degr = [r["degradation"] for r in record.values()]
    rows.append(["average", "", "", "", f"{100 * float(np.mean(degr)):.1f}%"])
    return rows, record


def cross_encoder_seconds(teacher, data, n: int, batch_size: int) -> float:
    """Seconds the cross-encoder takes to score the first ``n`` encoded (query, candidate) pairs."""
    from retort.data.batching import collate  # noqa: PLC0415  (torch)

    t0 = time.perf_counter()
    for s in range(0, n, batch_size):
        batch = collate(data, list(range(s, min(n, s + batch_size))))
        teacher(**{k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
    return time.perf_counter() - t0


def timing(args) -> tuple[list[list], dict]:
    """One query against N candidates (STS-B and MNLI dev sentences): the teacher scoring every pair against
    DSE embedding the query and scoring it with its pair head (candidates embedded once, timed apart)."""
    import torch  # noqa: PLC0415

    from retort.data.batching import encode  # noqa: PLC0415
    from retort.data.glue import Example, Split
    from retort.data.tasks import get_task, load_split
    from retort.deploy.dse import TorchEmbedder  # noqa: PLC0415
    from retort.models.hf import load_classifier, load_tokenizer  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    pool = [e.texts[1] for e in load_split("STS-B", "dev", args.glue_dir).examples]
    pool += [e.texts[1] for e in load_split("MNLI", "dev_matched", args.glue_dir).examples]
    pool = list(dict.fromkeys(pool))
    query = load_split("STS-B", "dev", args.glue_dir).examples[0].texts[0]
    task = get_task("STS-B")
    teacher_dir = str(Path(args.teachers) / "STS-B" / "model")
    teacher, ttok = load_classifier(teacher_dir, task).eval(), load_tokenizer(teacher_dir)
    dse = TorchEmbedder(str(Path(args.out) / "STS-B" / f"dse-{args.student}" / "model"))
    rows, record = [], {}
    with torch.inference_mode():
        for n in args.candidates:
            cands = pool[:n]
            data = encode(Split(task, "timing", [Example((query, c), 0.0) for c in cands], "timing"), ttok)
            cross_s = cross_encoder_seconds(teacher, data, n, args.batch_size)
            t0 = time.perf_counter()  # DSE: candidates once (offline), then the query
            emb = dse.embed(cands)
            index_s = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                dse.score_against(dse.embed([query])[0], emb)
                times.append(time.perf_counter() - t0)
            dse_s = float(np.median(times))
            record[n] = {"cross_encoder_s": cross_s, "dse_query_s": dse_s, "dse_index_s": index_s,
                         "speedup": cross_s / dse_s}  # fmt: skip
            rows.append([n, f"{cross_s:.2f}", f"{1000 * dse_s:.1f}", f"{cross_s / dse_s:.0f}x", f"{index_s:.1f}"])
    return rows, record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = parser(__doc__)
    add(p, "glue_dir", "teachers", COMPARE, "out", "tasks", "cap", "epochs", "epochs_for", "student", "seed",
        "threads", CANDIDATES, "batch_size", "repeats", PART, required=["glue_dir"], many=["tasks", "candidates"],
        defaults={"out": "runs/dse", "tasks": ["STS-B", "MRPC", "RTE", "MNLI"], "threads": 2, "batch_size": 32,
                  "repeats": 20})  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure the parts asked for, print their tables, update OUT/dse.json."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = json.loads((out / "dse.json").read_text()) if (out / "dse.json").exists() else {}
    if args.part in ("all", "quality"):
        rows, result["quality"] = quality(args)
        print_table(["task", "teacher", f"{args.student} cross-encoder (multilevel)", f"{args.student} DSE",
                     "DSE vs teacher"], rows)  # fmt: skip
    if args.part in ("all", "timing"):
        rows, result["timing"] = timing(args)
        from retort.machine import environment  # noqa: PLC0415

        result["timing_environment"] = environment(args.threads)
        print_table(["candidates", "cross-encoder s", "DSE query ms", "DSE speed-up", "DSE index s (once)"], rows)
    (out / "dse.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
