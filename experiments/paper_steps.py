"""The steps of ``experiments/paper.py`` after training (and one inside it): GLUE test-set files of the
multilevel student, written in its own run folder when it finishes (so ``--keep`` keeps them with the run), then
gathered; and one latency bench on a quiet machine.

A run restored from ``--keep`` has no model (a student's weights are not kept), so the bench takes the students
this machine holds: every method's student has the same shape, so its latency does not depend on which seed or
method the weights came from, and one student stands for all where the others are gone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from harness import call, locked
from keep import keep_runs

from retort.data.tasks import get_task
from retort.paths import write_atomic

PREDICTIONS = "glue-test"  # in the multilevel student's run folder (first seed), then OUT/glue-test


def predict_into(task: str, run: Path, glue_dir: str, threads: int) -> None:
    """GLUE test-set files (the leaderboard's names) of ``run``'s model, in ``run/glue-test``, once; nothing
    where the run holds no model (restored from ``--keep``) or the task has no test file."""
    splits = [s for s in get_task(task).test_splits if (Path(glue_dir) / task / f"{s}.tsv").exists()]
    if not splits or not (run / "model").is_dir():
        return
    with locked(run.with_name(run.name + ".lock")):  # the run's own: workers calling every job again at the end
        folder = run / PREDICTIONS
        if folder.is_dir():
            return
        old = run / (PREDICTIONS + ".tmp")  # left as a file by a version that let predict read it as a file's name
        if old.is_file():
            old.unlink()
        tmp = run / f"{PREDICTIONS}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()  # a folder: predict names each file after the leaderboard (MNLI's two splits, two files)
        for split in splits:
            call(["predict", "--task", task, "--split", split, "--model", run / "model", "--out", tmp,
                  "--glue-dir", glue_dir, "--threads", threads])  # fmt: skip
        tmp.rename(folder)


def predict_test_sets(a: argparse.Namespace, out: Path) -> Path:
    """OUT/glue-test: the files each task's multilevel student wrote when it finished (``predict_into``; made now
    for a run that finished before it did so and still holds its model, and then kept with ``--keep``); returns
    the folder."""
    predictions = out / PREDICTIONS
    predictions.mkdir(parents=True, exist_ok=True)
    for task in a.tasks:
        run = out / "runs" / task / f"multilevel-s{a.seeds[0]}"
        predict_into(task, run, a.glue_dir, a.bench_threads)
        if a.keep:
            keep_runs(out, Path(a.keep), [run])
        for f in sorted((run / PREDICTIONS).glob("*")) if (run / PREDICTIONS).is_dir() else []:
            shutil.copy2(f, predictions / f.name)
    return predictions


def _students(a: argparse.Namespace, runs: Path) -> dict[str, Path | None]:
    """Each method's, variant's and sweep point's model on one task: the first seed whose model this machine
    holds, else None."""
    names = [*a.methods, *a.variants] + [f"{m}-T{t:g}" for m in a.sweep_methods for t in a.temperatures if t != 2.0]
    return {n: next((m for s in a.seeds if (m := runs / f"{n}-s{s}" / "model").is_dir()), None) for n in names}


def bench_latency(a: argparse.Namespace, out: Path) -> Path:
    """One ``retort bench`` (batch 1, peak memory) of the teacher and every student this machine holds on the
    first sweep task (else the first task that holds one), in PyTorch fp32, and of the teacher and the reference
    student (multilevel, else any) exported to ONNX int8, once; returns its JSON."""
    tasks = [*(t for t in a.sweep_tasks if t in a.tasks), *a.tasks]
    task = next((t for t in tasks if any(_students(a, out / "runs" / t).values())), tasks[0])
    runs = out / "runs" / task
    teacher = out / "teachers" / task / "model"
    students = _students(a, runs)
    models = [str(teacher)] + [str(m) for m in students.values() if m]
    if len(models) == 1:
        print(f"note: no student model on this machine for {task} (all restored from --keep): the bench times the "
              "teacher alone", flush=True)  # fmt: skip
    ref = next((n for n in ("multilevel", *students) if students.get(n)), "multilevel")
    for name, model in (("teacher", teacher), (ref, students.get(ref) or runs / "none")):
        export = out / "exports" / f"{task}-{name}-int8"
        if model.is_dir() and not export.is_dir():  # written under a temporary name: a folder is a finished one
            call(["export", "--model", model, "--out", export, "--quantize", "int8-dynamic", "--glue-dir",
                  a.glue_dir, "--threads", a.bench_threads])  # fmt: skip
        if export.is_dir():
            models.append(str(export))
    bench_json = out / f"bench-{task}.json"
    if not bench_json.exists():
        call(["bench", "--model", *models, "--task", task, "--glue-dir", a.glue_dir, "--threads", a.bench_threads,
              "--batch-sizes", "1", "--samples", "128", "--json", bench_json])  # fmt: skip
    return bench_json


def kept_bench(bench_json: Path, out: Path, keep: Path) -> Path:
    """``bench_json`` again as ``KEEP/<its name>``, each model it timed under OUT's runs or teachers named by its
    kept copy (``experiments/keep.py``: the same run, in the folder that is committed), so a page made from the
    kept folders finds its timings; returns the new file. Exports (not kept) keep their OUT paths and are named
    by their ``source_model``, rewritten the same way."""
    data = json.loads(bench_json.read_text())
    root = out.resolve()

    def kept(path: str | None) -> str | None:
        p = Path(path).resolve() if path else None
        if p is None or root not in p.parents or p.relative_to(root).parts[0] not in ("runs", "teachers"):
            return path
        return str(keep / p.relative_to(root))

    for run in data["runs"]:
        run["model"], run["source_model"] = kept(run["model"]), kept(run.get("source_model"))
    return write_atomic(keep / bench_json.name, json.dumps(data, indent=2))


def page_bench(a: argparse.Namespace, out: Path) -> Path:
    """The bench JSON the page reads: ``bench_latency``'s; with ``--keep``, its copy naming the kept runs
    (``kept_bench``), unless the kept folder already holds a bench that timed students and this machine holds
    none (a sitting that restored every run): then that one, never replaced by a bench of the teacher alone."""
    if not a.keep:
        return bench_latency(a, out)
    keep = Path(a.keep)
    earlier = [f for f in sorted(keep.glob("bench-*.json")) if _timed_students(f, keep)]
    if earlier and not any(any(_students(a, out / "runs" / t).values()) for t in a.tasks):
        print(f"note: no student model on this machine: the page reads the kept bench {earlier[0]}", flush=True)
        return earlier[0]
    return kept_bench(bench_latency(a, out), out, keep)


def _timed_students(bench_json: Path, keep: Path) -> bool:
    """Whether a kept bench JSON timed a student in PyTorch (a model under KEEP/runs)."""
    runs = (keep / "runs").resolve()
    rows = json.loads(bench_json.read_text())["runs"]
    return any(r.get("backend") == "torch" and runs in Path(r["model"]).resolve().parents for r in rows)
