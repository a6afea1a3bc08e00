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
from harness import Option, Run, add, distill_command, parser, per_task, print_table, transfer_suffix, work_through

from retort.data.tasks import get_task
from retort.deploy.bench import bench_in_subprocess
from retort.distill.presets import TWO_STAGE

METHODS = ["kd", "distilbert", "tinybert", "minilm", "multilevel"]
TASKS = ["STS-B", "MRPC", "RTE", "CoLA", "SST-2", "MNLI"]
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


def columns(task: str) -> list[tuple[str, str]]:
    """(split, metric) columns of ``task``: a GLUE task's above, a task of the user's its primary metric."""
    return COLUMNS.get(task) or [("dev", get_task(task).primary_metric)]


OWN_OPTIONS = (
    Option("--narrow", "also run multilevel with this narrow random student on STS-B"),
    Option("--narrow-heads", "heads of the narrow student (the teacher's)", type=int, default=12, low=1),
    Option("--partial", "train nothing: tabulate the runs that have finished", type=None),
    Option("--transfer-for", "a task's transfer set (extra rows; repeatable)", repeat=True, metavar="TASK=SPEC"),
    Option("--transfer-methods", "methods run with transfer sets", default=["multilevel"]),
    Option("--transfer-name", 'rows with transfer sets are "METHOD + NAME"', default="transfer"),
)


def epochs_for(args, task: str) -> int:
    """The epochs of ``task``'s runs: its ``--epochs-for``, else ``--epochs``."""
    return int(per_task(args.epochs_for).get(task, args.epochs))


def distill(args, task: str, method: str, out: Path, student: str, init: str | None, extra: list[str]) -> dict:
    """One method on one task; returns the final metrics with the total wall time of all stages."""
    epochs = epochs_for(args, task)
    teacher = str(Path(args.teachers) / task / "model")
    base = Run(out, (*distill_command(task, args.glue_dir, teacher, student, args.seed, args.threads), "--method",
                     method, *extra)).also(max_train_samples=per_task(args.cap).get(task))  # fmt: skip
    if method not in TWO_STAGE:
        m = base.also(student_init=init, epochs=epochs).make()
        m["stage_seconds"] = [m["wall_seconds"]]
        return m
    if epochs < 2:
        raise SystemExit(f"{method} has two stages and needs at least 2 epochs on {task}")
    e1 = math.ceil(epochs / 2)
    first = Run(out.with_name(out.name + "-intermediate"), base.args).also(student_init=init, stage="intermediate",
                                                                          epochs=e1)  # fmt: skip
    m1 = first.make()
    m2 = base.also(stage="prediction", student_init=str(first.model), epochs=epochs - e1).make()
    m2["stage_seconds"] = [m1["wall_seconds"], m2["wall_seconds"]]
    return m2


def bench(model_dir: Path, args) -> float:
    """ms/sample (p50) at batch 1 of a model on STS-B, timed once (MODEL/../bench.json) and read back."""
    out = model_dir.parent / "bench.json"
    result = json.loads(out.read_text()) if out.exists() else bench_in_subprocess(model_dir, "STS-B", args.glue_dir)
    return result["latency"][0]["ms_per_sample_p50"]


def transfer_spec(args, task: str) -> str | None:
    """``task``'s transfer set (``--transfer-for TASK=SPEC``), None when it has none."""
    return per_task(args.transfer_for).get(task)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: the shared study options, then this comparison's own."""
    p = parser(__doc__)
    add(p, "glue_dir", "teachers", "out", "tasks", "methods", "epochs", "epochs_for", "seed", "threads", "student",
        "cap", *OWN_OPTIONS, "json", required=["glue_dir"], many=["tasks", "methods", "transfer_methods"],
        defaults={"out": "runs/compare", "tasks": TASKS, "methods": METHODS, "threads": 2})  # fmt: skip
    return p.parse_args(argv)


def variants_of(args) -> list[str]:
    """The table's method rows: the methods, then ``METHOD+NAME`` for each method run with transfer sets."""
    variants = list(args.methods)
    if args.transfer_for:
        variants += [f"{m}+{args.transfer_name}" for m in args.transfer_methods]
    return variants


def jobs_of(args, variants: list[str]) -> dict:
    """Every job by name (``TASK/METHOD``, ``narrow``), task-major: a task's methods finish together, the
    biggest tasks go last."""
    out = Path(args.out)

    def job(task: str, name: str):
        folder, extra = run_name(args, task, name)
        return lambda: distill(args, task, name.partition("+")[0], out / task / folder, args.student, None, extra)

    jobs = {f"{task}/{name}": job(task, name) for task in args.tasks for name in variants}
    if args.narrow:
        narrow = out / "STS-B" / f"multilevel-{args.narrow}"
        heads = ["--student-heads", str(args.narrow_heads)]
        jobs["narrow"] = lambda: distill(args, "STS-B", "multilevel", narrow, args.narrow, "random", heads)
    return jobs


def teacher_row(args) -> dict:
    """The teacher's row: its best dev scores per task (read before anything trains: a missing teacher
    stops the script at once)."""
    teachers = Path(args.teachers)
    return {"scores": {t: json.loads((teachers / t / "metrics.json").read_text())["best"] for t in args.tasks}}


def result_rows(args, variants: list[str], done: dict, teacher: dict) -> dict:
    """The results' rows by name: the teacher's, each method's scores and training time, the narrow's."""
    rows: dict = {"teacher": teacher}
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
        rows[method.replace("+", " + ")] = row
    if args.narrow and "narrow" in done:
        m = done["narrow"]
        rows[f"multilevel {args.narrow} (random init)"] = {"scores": {"STS-B": m["best"]},
                                                           "train_seconds": sum(m["stage_seconds"])}  # fmt: skip
    return rows


def table_rows(args, results: dict) -> tuple[list[str], list[list]]:
    """(headers, rows) of the printed table; sets each result row's ``average`` on the way."""
    teacher_ms, student_ms = results["ms_per_sample_batch1"]["teacher"], results["ms_per_sample_batch1"]["student"]
    headers = (
        ["model"]
        + [f"{t} {m}" + ("" if s == "dev" else f" ({s[4:]})") for t in args.tasks for s, m in columns(t)]
        + ["avg", "vs teacher", "train min", "ms/sample b1"]
    )
    rows = []
    teacher_avg = None
    for name, row in results["rows"].items():
        cells, task_scores = [], []
        for t in args.tasks:
            sc = row["scores"].get(t)
            for s, m in columns(t):
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
        minutes = f"{row['train_seconds'] / 60:.1f}" if "train_seconds" in row and (complete or "x" in name) else "-"
        rows.append([name, *cells, avg, rel, minutes, f"{ms:.2f}" if ms else "-"])
    return headers, rows


def main(argv: list[str] | None = None) -> int:
    """Train what is missing (or, with ``--partial``, nothing), then write the JSON and print the table."""
    args = parse_args(argv)
    out = Path(args.out)
    teacher = teacher_row(args)
    variants = variants_of(args)
    jobs = jobs_of(args, variants)
    if args.partial:
        done = {name: fn() for name, fn in jobs.items() if finished(out, name, args)}
    else:
        done = work_through(jobs, out / ".locks")
    results: dict = {"args": vars(args), "rows": result_rows(args, variants, done, teacher)}
    teacher_ms = bench(Path(args.teachers) / "STS-B" / "model", args) if "STS-B" in args.tasks else None
    same_shape = "multilevel" if "multilevel" in args.methods else args.methods[0]  # one shape: one bench
    student_ms = bench(out / "STS-B" / same_shape / "model", args) if "STS-B" in args.tasks else None  # STS-B data
    results["ms_per_sample_batch1"] = {"teacher": teacher_ms, "student": student_ms}
    headers, rows = table_rows(args, results)
    Path(args.json or out / "compare.json").write_text(json.dumps(results, indent=2))
    print_table(headers, rows)
    r = results["rows"]
    for suffix in ("", f" + {args.transfer_name}"):
        kd, ml = r.get(f"kd{suffix}", {}).get("average"), r.get(f"multilevel{suffix}", {}).get("average")
        if kd is not None and ml is not None:
            print(f"\nmultilevel{suffix} - kd{suffix}, average over {len(args.tasks)} tasks: {ml - kd:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
