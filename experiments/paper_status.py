"""What the runs of ``experiments/paper.py`` have done and cost: a job's run folders, the wall hours of every run,
and ``--status`` (which jobs are done, and about how long the rest would take). Reads run folders; trains nothing."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from retort.data.glue import split_file
from retort.data.tasks import get_task


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
    in rows and one number), else of its task's students, else per byte of training text of its method's (else its
    kind's) finished jobs on other tasks times its task's bytes (CoLA's rows are a fifth of MRPC's), less what its
    finished stages took. Trains nothing."""
    names, done, started = list(paper.jobs()), {}, {}
    for n in names:
        f = job_folder(paper.out, n)
        runs = [m for m in job_folders(paper.out, n) if (m / "metrics.json").is_file()]  # with earlier stages
        spent = sum(json.loads((m / "metrics.json").read_text()).get("wall_seconds") or 0.0 for m in runs)
        (done if (f / "metrics.json").is_file() else started)[n] = spent  # started: its finished stages
    part = {n: "teachers" if n.startswith("teacher/") else "sweep" if "-T" in n.split("/")[1] else
            "variants" if n.split("/")[1] in paper.a.variants else "method table" for n in names}  # fmt: skip
    keys = {n: (n.split("/")[0], n.split("/")[1].split("-T")[0]) for n in names}  # (task, method)
    sizes: dict[str, int] = {}

    def size(task: str) -> int:  # bytes of the training rows a student of the task reads: about its tokens
        if task not in sizes:
            sizes[task] = text_bytes(paper.a.glue_dir, task, paper.rows(task))
        return sizes[task]

    def guess(n: str) -> float:
        kin = [m for m in done if (part[m] == "teachers") == (part[n] == "teachers")]
        pool = [m for m in kin if keys[m] == keys[n]] or [m for m in kin if keys[m][0] == keys[n][0]]
        if pool or not kin:
            return float(np.median([done[m] for m in pool])) if pool else 0.0
        pool = [m for m in kin if keys[m][1] == keys[n][1]] or kin  # no job of its task done: per byte of text
        return float(np.median([done[m] / size(keys[m][0]) for m in pool])) * size(keys[n][0])

    parts = {k: [sum(part[n] == k for n in done), sum(part[n] == k for n in names)]
             for k in ("teachers", "method table", "variants", "sweep")}  # fmt: skip
    rest, workers = sum(max(guess(n) - started[n], 0.0) for n in started), max(1, paper.a.workers)
    print(
        "; ".join(f"{k} {d} of {t}" for k, (d, t) in parts.items() if t) + " done; the rest: about "
        f"{rest / 3600:.1f} h of runs, {rest / 3600 / workers:.1f} h with {workers} worker(s) (each pending job at "
        "the median wall time of finished jobs of its task and method, or per byte of text where its task has none; a "
        "run paused while it ran counts its pause)"
    )
    return {"parts": parts, "rest_seconds": rest, "workers": workers}
