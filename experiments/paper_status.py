"""What the runs of ``experiments/paper.py`` have done and cost: a job's run folders, the wall hours of every run,
and ``--status`` (which jobs are done, and about how long the rest would take). Reads run folders; trains nothing."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from retort.data.glue import split_file
from retort.data.tasks import get_task


def teacher_seconds_per_row(out: Path, task: str) -> float | None:
    """The task's finished teacher's wall seconds per training row and epoch, or None where it has not finished."""
    f = out / "teachers" / task / "metrics.json"
    m = json.loads(f.read_text()) if f.is_file() else {}
    rows, epochs, seconds = m.get("train_examples"), m.get("epochs"), m.get("wall_seconds")
    return seconds / (rows * epochs) if rows and epochs and seconds else None


def text_bytes(glue_dir: str, task: str, rows: int) -> int:
    """Bytes of the first ``rows`` rows of a task's training file (its header excluded)."""
    with open(split_file(get_task(task), Path(glue_dir), "train"), "rb") as f:
        next(f, None)
        return sum(len(line) for line in itertools.islice(f, rows))


def runs_hours(out: Path) -> float:
    """The wall time of every run under OUT (teachers and students), summed from their metrics.json: what the
    training cost across every sitting, where this sitting's clock sees only its own."""
    total = 0.0
    for metrics in [*out.glob("teachers/*/metrics.json"), *out.glob("runs/*/*/metrics.json")]:
        total += json.loads(metrics.read_text()).get("wall_seconds") or 0.0
    return total / 3600


def job_folder(out: Path, name: str) -> Path:
    """A job's final run: ``teacher/TASK`` -> OUT/teachers/TASK, ``TASK/TAG/sSEED`` -> OUT/runs/TASK/TAG-sSEED."""
    first, tag, *seed = name.split("/")
    return out / "teachers" / tag if first == "teacher" else out / "runs" / first / f"{tag}-{seed[0]}"


def job_folders(out: Path, name: str) -> list[Path]:
    """A job's run folders: its final run and its earlier stages (``NAME-intermediate``, ``NAME-progressive1``...)."""
    f = job_folder(out, name)
    return [f, *sorted(f.parent.glob(f"{f.name}-*"))] if f.parent.is_dir() else [f]


def status(paper) -> dict:
    """Which jobs are done, per part of the page, and about how long the rest would take: a pending job at the
    median wall time (every stage) of the finished jobs of its task and method (seeds and temperatures differ
    in rows and one number), else of its task's students, else its method's (else every student's) finished jobs on
    other tasks scaled by each task's cost (``size``: its teacher's seconds per row, so CoLA's short rows count
    less than MRPC's), less what its finished stages took; a teacher at the finished teachers' median. Trains
    nothing."""
    names, done, started = list(paper.jobs()), {}, {}
    for n in names:
        f = job_folder(paper.out, n)
        runs = [m for m in job_folders(paper.out, n) if (m / "metrics.json").is_file()]  # with earlier stages
        spent = sum(json.loads((m / "metrics.json").read_text()).get("wall_seconds") or 0.0 for m in runs)
        (done if (f / "metrics.json").is_file() else started)[n] = spent  # started: its finished stages
    part = {n: "teachers" if n.startswith("teacher/") else "sweep" if "-T" in n.split("/")[1] else
            "variants" if n.split("/")[1] in paper.a.variants else "method table" for n in names}  # fmt: skip
    keys = {n: (n.split("/")[0], n.split("/")[1].split("-T")[0]) for n in names}  # (task, method)
    per_row = {t: teacher_seconds_per_row(paper.out, t) for t in {k[0] for k in keys.values() if k[0] != "teacher"}}
    measured = all(per_row.values())  # else bytes for every task: one unit throughout

    def size(task: str) -> float:
        """What a student of ``task`` costs, up to a factor: its teacher's seconds per row and epoch (the task's
        text lengths, measured) times the student's rows; bytes of its training text until every teacher is done."""
        rows = paper.rows(task)
        return per_row[task] * rows if measured else float(text_bytes(paper.a.glue_dir, task, rows))

    def guess(n: str) -> float:
        kin = [m for m in done if (part[m] == "teachers") == (part[n] == "teachers")]
        pool = [m for m in kin if keys[m] == keys[n]] or [m for m in kin if keys[m][0] == keys[n][0]]
        if pool or not kin or part[n] == "teachers":  # a teacher: at the finished teachers' median
            return float(np.median([done[m] for m in pool or kin])) if pool or kin else 0.0
        pool = [m for m in kin if keys[m][1] == keys[n][1]] or kin  # no job of its task done: scaled by its cost
        units = [m for m in pool if size(keys[m][0]) > 0]
        return float(np.median([done[m] / size(keys[m][0]) for m in units])) * size(keys[n][0]) if units else 0.0

    parts = {k: [sum(part[n] == k for n in done), sum(part[n] == k for n in names)]
             for k in ("teachers", "method table", "variants", "sweep")}  # fmt: skip
    rest, workers = sum(max(guess(n) - started[n], 0.0) for n in started), max(1, paper.a.workers)
    print(
        "; ".join(f"{k} {d} of {t}" for k, (d, t) in parts.items() if t) + " done; the rest: about "
        f"{rest / 3600:.1f} h of runs, {rest / 3600 / workers:.1f} h with {workers} worker(s) (each pending job at "
        "the median wall time of finished jobs of its task and method, or scaled by its teacher's time per row where "
        "its task has none; a "
        "run paused while it ran counts its pause)"
    )
    return {"parts": parts, "rest_seconds": rest, "workers": workers}
