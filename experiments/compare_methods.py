"""Issue #3's comparison: the five method presets on the same teacher, student, data, seed and budget.

For every task, every method distils the same 3x384 student (initialised from the teacher's layers
2, 4, 6) from the same fine-tuned teacher (``TEACHERS/TASK/model``, see glue_teachers.py). Budget:
every method gets ``--epochs`` passes over the (capped) training set in total; a two-stage method
(tinybert, minilm) spends ceil(E/2) of them on the intermediate stage and the rest on prediction.
A finished run is skipped and an interrupted one resumes, so the script can be stopped and started
again; several copies started side by side (each with ``--threads 1``, say) share the runs between them
without training any twice. Optionally a narrow student (``--narrow 4x312``, random init, 12 heads)
runs multilevel on STS-B. With ``--transfer-for TASK=SPEC`` the ``--transfer-methods`` also run with
that task's transfer set (unlabelled inputs the teacher labels, ``retort distill --transfer``; see
src/retort/data/transfer.py) as extra rows "METHOD + NAME" (``--transfer-name``, default "transfer");
a run's folder is named by its spec (``multilevel+mnli15k``), so rows that share a task's spec share its
run, and tasks without a spec reuse the plain run.

    python experiments/compare_methods.py --glue-dir ../shared/data/glue --teachers runs/teachers \
        --out runs/compare --tasks STS-B MRPC RTE CoLA SST-2 MNLI --epochs 3 \
        --cap SST-2=10000 --cap MNLI=10000 --epochs-for SST-2=2 --epochs-for MNLI=2

Writes OUT/compare.json and prints a Markdown table (dev scores, average, training time, ms/sample).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from _runs import distill_command, retort, transfer_suffix, work_through

from retort.deploy.bench import bench_in_subprocess
from retort.distill.presets import TWO_STAGE
from retort.report.tables import table

METHODS = ["kd", "distilbert", "tinybert", "minilm", "multilevel"]
COLUMNS = {  # task -> (split, metric) columns shown in the table
    "STS-B": [("dev", "pearson"), ("dev", "spearman")],
    "SST-2": [("dev", "accuracy")],
    "MRPC": [("dev", "f1"), ("dev", "accuracy")],
    "RTE": [("dev", "accuracy")],
    "CoLA": [("dev", "mcc")],
    "MNLI": [("dev_matched", "accuracy"), ("dev_mismatched", "accuracy")],
    "QNLI": [("dev", "accuracy")],
    "QQP": [("dev", "f1"), ("dev", "accuracy")],
    "WNLI": [("dev", "accuracy")],
}


def epochs_for(args, task: str) -> int:
    return int(dict(c.split("=") for c in args.epochs_for).get(task, args.epochs))


def distill(args, task: str, method: str, out: Path, student: str, init: str | None, extra: list[str]) -> dict:
    """One method on one task; returns the final metrics with the total wall time of all stages."""
    epochs = epochs_for(args, task)
    teacher = str(Path(args.teachers) / task / "model")
    base = distill_command(task, args.glue_dir, teacher, student, args.seed, args.threads)
    base += ["--method", method, *extra]
    cap = dict(c.split("=") for c in args.cap).get(task)
    if cap:
        base += ["--max-train-samples", cap]
    init_args = ["--student-init", init] if init else []
    if method not in TWO_STAGE:
        m = retort([*base, *init_args, "--epochs", str(epochs)], out)
        m["stage_seconds"] = [m["wall_seconds"]]
        return m
    if epochs < 2:
        raise SystemExit(f"{method} has two stages and needs at least 2 epochs on {task}")
    e1 = math.ceil(epochs / 2)
    first = out.with_name(out.name + "-intermediate")
    m1 = retort([*base, *init_args, "--stage", "intermediate", "--epochs", str(e1)], first)
    m2 = retort(
        [*base, "--stage", "prediction", "--student-init", str(first / "model"), "--epochs", str(epochs - e1)], out
    )
    m2["stage_seconds"] = [m1["wall_seconds"], m2["wall_seconds"]]
    return m2


def bench(model_dir: Path, args) -> float:
    out = model_dir.parent / "bench.json"
    result = json.loads(out.read_text()) if out.exists() else bench_in_subprocess(model_dir, "STS-B", args.glue_dir)
    return result["latency"][0]["ms_per_sample_p50"]


def transfer_spec(args, task: str) -> str | None:
    return dict(c.split("=", 1) for c in args.transfer_for).get(task)


def run_name(args, task: str, name: str) -> tuple[str, list[str]]:
    """A job's method (``kd``, ``multilevel+transfer``...) -> (its run folder under OUT/TASK, extra args)."""
    method, _, variant = name.partition("+")
    spec = transfer_spec(args, task) if variant else None
    return (f"{method}+{transfer_suffix(spec)[1:]}", ["--transfer", spec]) if spec else (method, [])


def finished(out: Path, name: str, args) -> bool:
    """Whether a job's final run (and, for a two-stage method, its first stage) has its metrics."""
    if name == "narrow":
        return (out / "STS-B" / f"multilevel-{args.narrow}" / "metrics.json").exists()
    task, method = name.split("/")
    folder, _ = run_name(args, task, method)
    method = method.partition("+")[0]
    runs = [out / task / folder] + ([out / task / f"{folder}-intermediate"] if method in TWO_STAGE else [])
    return all((r / "metrics.json").exists() for r in runs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--teachers", default="runs/teachers")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--tasks", nargs="+", default=["STS-B", "MRPC", "RTE", "CoLA", "SST-2", "MNLI"])
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--epochs-for", action="append", default=[], metavar="TASK=E", help="another budget for a task")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--student", default="3x384")
    p.add_argument("--cap", action="append", default=[], metavar="TASK=N", help="cap a task's training rows")
    p.add_argument("--narrow", default=None, help="also run multilevel with this narrow random student on STS-B")
    p.add_argument("--narrow-heads", type=int, default=12, help="heads of the narrow student (the teacher's)")
    p.add_argument("--partial", action="store_true", help="train nothing: tabulate the runs that have finished")
    p.add_argument(
        "--transfer-for", action="append", default=[], metavar="TASK=SPEC", help="a task's transfer set (extra rows)"
    )
    p.add_argument("--transfer-methods", nargs="+", default=["multilevel"], help="methods run with transfer sets")
    p.add_argument("--transfer-name", default="transfer", help='rows with transfer sets are "METHOD + NAME"')
    p.add_argument("--json", default=None, help="where to write the results (default OUT/compare.json)")
    args = p.parse_args()
    out = Path(args.out)
    results: dict = {"args": vars(args), "rows": {}}
    teacher_row = {}
    for task in args.tasks:
        teacher_row[task] = json.loads((Path(args.teachers) / task / "metrics.json").read_text())["best"]
    results["rows"]["teacher"] = {"scores": teacher_row}
    # task-major order: a task's five methods finish together; the biggest tasks go last
    variants = list(args.methods)
    if args.transfer_for:
        variants += [f"{m}+{args.transfer_name}" for m in args.transfer_methods]

    def job(task: str, name: str):
        folder, extra = run_name(args, task, name)
        return lambda: distill(args, task, name.partition("+")[0], out / task / folder, args.student, None, extra)

    jobs = {f"{task}/{name}": job(task, name) for task in args.tasks for name in variants}
    if args.narrow:
        jobs["narrow"] = lambda: distill(
            args,
            "STS-B",
            "multilevel",
            out / "STS-B" / f"multilevel-{args.narrow}",
            args.narrow,
            "random",
            ["--student-heads", str(args.narrow_heads)],
        )
    if args.partial:
        done = {name: fn() for name, fn in jobs.items() if finished(out, name, args)}
    else:
        done = work_through(jobs, out / ".locks")
    for method in variants:
        row = {"scores": {}, "train_seconds": 0.0, "train_seconds_by_task": {}}
        for task in args.tasks:
            m = done.get(f"{task}/{method}")
            if m is None:
                continue
            row["scores"][task] = m["best"]
            row["train_seconds"] += sum(m["stage_seconds"])
            row["train_seconds_by_task"][task] = sum(m["stage_seconds"])
        if "+" in method:
            row["transfer"] = {t: transfer_spec(args, t) for t in args.tasks if transfer_spec(args, t)}
        results["rows"][method.replace("+", " + ")] = row
    if args.narrow and "narrow" in done:
        m = done["narrow"]
        results["rows"][f"multilevel {args.narrow} (random init)"] = {
            "scores": {"STS-B": m["best"]},
            "train_seconds": sum(m["stage_seconds"]),
        }
    teacher_ms = bench(Path(args.teachers) / "STS-B" / "model", args) if "STS-B" in args.tasks else None
    same_shape = "multilevel" if "multilevel" in args.methods else args.methods[0]  # one shape: one bench
    student_ms = bench(out / "STS-B" / same_shape / "model", args) if "STS-B" in args.tasks else None  # STS-B data
    results["ms_per_sample_batch1"] = {"teacher": teacher_ms, "student": student_ms}

    headers = (
        ["model"]
        + [f"{t} {m}" + ("" if s == "dev" else f" ({s[4:]})") for t in args.tasks for s, m in COLUMNS[t]]
        + ["avg", "vs teacher", "train min", "ms/sample b1"]
    )
    rows = []
    teacher_avg = None
    for name, row in results["rows"].items():
        cells, task_scores = [], []
        for t in args.tasks:
            sc = row["scores"].get(t)
            for s, m in COLUMNS[t]:
                cells.append(sc[s][m] if sc else None)
            if sc:
                task_scores.append(np.mean([r["score"] for r in sc.values()]))
        complete = len(task_scores) == len(args.tasks)
        avg = float(np.mean(task_scores)) if complete else None
        row["average"] = avg
        if name == "teacher":
            teacher_avg = avg
        rel = f"{100 * avg / teacher_avg:.1f}%" if avg is not None and teacher_avg else "-"
        same = name.split(" + ")[0] in METHODS
        ms = teacher_ms if name == "teacher" else (student_ms if args.student in name or same else None)
        rows.append(
            [
                name,
                *cells,
                avg,
                rel,
                f"{row['train_seconds'] / 60:.1f}" if "train_seconds" in row and (complete or "x" in name) else "-",
                f"{ms:.2f}" if ms else "-",
            ]
        )
    Path(args.json or out / "compare.json").write_text(json.dumps(results, indent=2))
    print(table(headers, rows, markdown=True))
    r = results["rows"]
    for suffix in ("", f" + {args.transfer_name}"):
        kd, ml = r.get(f"kd{suffix}", {}).get("average"), r.get(f"multilevel{suffix}", {}).get("average")
        if kd is not None and ml is not None:
            print(f"\nmultilevel{suffix} - kd{suffix}, average over {len(args.tasks)} tasks: {ml - kd:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
