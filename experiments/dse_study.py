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
import torch
from _runs import retort

from retort.report.tables import table


def quality(args) -> tuple[list[list], dict]:
    rows = []
    caps = dict(c.split("=") for c in args.cap)
    record = {}
    for task in args.tasks:
        teacher = Path(args.teachers) / task
        common = [
            "--task",
            task,
            "--glue-dir",
            args.glue_dir,
            "--teacher",
            str(teacher / "model"),
            "--student",
            args.student,
            "--epochs",
            dict(e.split("=") for e in args.epochs_for).get(task, str(args.epochs)),
            "--seed",
            str(args.seed),
            "--threads",
            str(args.threads),
        ]
        if task in caps:
            common += ["--max-train-samples", caps[task]]
        cross = retort(["distill", *common, "--method", "multilevel"], Path(args.compare) / task / "multilevel")
        dse = retort(["dse", "train", *common], Path(args.out) / task / f"dse-{args.student}")
        t = json.loads((teacher / "metrics.json").read_text())["best"]
        score = lambda best: float(np.mean([r["score"] for r in best.values()]))  # noqa: E731
        st, sc, sd = score(t), score(cross["best"]), score(dse["best"])
        record[task] = {
            "teacher": t,
            "cross_student": cross["best"],
            "dse": dse["best"],
            "dse_train_seconds": dse["wall_seconds"],
            "degradation": 1 - sd / st,
        }
        rows.append([task, st, sc, sd, f"{100 * (1 - sd / st):.1f}%"])
    degr = [r["degradation"] for r in record.values()]
    rows.append(["average", "", "", "", f"{100 * float(np.mean(degr)):.1f}%"])
    return rows, record


@torch.inference_mode()
def timing(args) -> tuple[list[list], dict]:
    from retort.data.batching import collate, encode
    from retort.data.glue import Example, Split, get_task, load_split
    from retort.deploy.dse import embed_texts, load_biencoder, score_against
    from retort.models.hf import load_classifier, load_tokenizer

    torch.set_num_threads(args.threads)
    pool = [e.texts[1] for e in load_split("STS-B", "dev", args.glue_dir).examples]
    pool += [e.texts[1] for e in load_split("MNLI", "dev_matched", args.glue_dir).examples]
    pool = list(dict.fromkeys(pool))
    query = load_split("STS-B", "dev", args.glue_dir).examples[0].texts[0]
    task = get_task("STS-B")
    teacher_dir = str(Path(args.teachers) / "STS-B" / "model")
    teacher, ttok = load_classifier(teacher_dir, task).eval(), load_tokenizer(teacher_dir)
    model, tok = load_biencoder(str(Path(args.out) / "STS-B" / f"dse-{args.student}" / "model"))
    rows, record = [], {}
    for n in args.candidates:
        cands = pool[:n]
        # teacher: every pair through the cross-encoder
        data = encode(Split(task, "timing", [Example((query, c), 0.0) for c in cands], "timing"), ttok)
        t0 = time.perf_counter()
        for s in range(0, n, args.batch_size):
            teacher(
                **{
                    k: v
                    for k, v in collate(data, list(range(s, min(n, s + args.batch_size)))).items()
                    if k in ("input_ids", "attention_mask", "token_type_ids")
                }
            )
        cross_s = time.perf_counter() - t0
        # DSE: candidates once (offline), then the query
        t0 = time.perf_counter()
        emb = embed_texts(model, tok, cands)
        index_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            q = embed_texts(model, tok, [query])[0]
            score_against(model, q, emb)
            times.append(time.perf_counter() - t0)
        dse_s = float(np.median(times))
        record[n] = {
            "cross_encoder_s": cross_s,
            "dse_query_s": dse_s,
            "dse_index_s": index_s,
            "speedup": cross_s / dse_s,
        }
        rows.append([n, f"{cross_s:.2f}", f"{1000 * dse_s:.1f}", f"{cross_s / dse_s:.0f}x", f"{index_s:.1f}"])
    return rows, record


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--teachers", default="runs/teachers")
    p.add_argument("--compare", default="runs/compare")
    p.add_argument("--out", default="runs/dse")
    p.add_argument("--tasks", nargs="+", default=["STS-B", "MRPC", "RTE", "MNLI"])
    p.add_argument("--cap", action="append", default=[], metavar="TASK=N")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--epochs-for", action="append", default=[], metavar="TASK=E", help="another budget for a task")
    p.add_argument("--student", default="3x384")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--candidates", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--batch-size", type=int, default=32, help="cross-encoder batch size")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--part", choices=["all", "quality", "timing"], default="all")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = json.loads((out / "dse.json").read_text()) if (out / "dse.json").exists() else {}
    if args.part in ("all", "quality"):
        rows, result["quality"] = quality(args)
        print(
            table(
                [
                    "task",
                    "teacher",
                    f"{args.student} cross-encoder (multilevel)",
                    f"{args.student} DSE",
                    "DSE vs teacher",
                ],
                rows,
                markdown=True,
            )
        )
    if args.part in ("all", "timing"):
        rows, result["timing"] = timing(args)
        from retort.machine import environment

        result["timing_environment"] = environment(args.threads)
        print(
            table(
                ["candidates", "cross-encoder s", "DSE query ms", "DSE speed-up", "DSE index s (once)"],
                rows,
                markdown=True,
            )
        )
    (out / "dse.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
