"""The evidence page: ``retort report RUN_DIRS... --out DIR``.

Reads finished run folders (each with ``metrics.json`` and ``config.yaml``; a folder without one is
searched for runs below it) and ``retort bench`` JSON files, and writes one self-contained page, twice:
``DIR/index.html`` (plots beside it in ``DIR/img``, no network needed to view it) and ``DIR/report.md``,
plus ``DIR/report.json`` (every number on the page) and ``DIR/configs`` (the config of every run).

Sections, each present when its runs are:

- **Table 1, methods**: one row per method (``--tag`` names a variant; default the method) and one column
  per task metric, mean +- standard deviation over seeds of the dev score, at the default temperature;
  one row per task's teacher. A run kept on held-out training rows (``--val-split``) shows its dev score
  measured once on the kept model; a run without, its best dev epoch (dev-selected, marked). The average
  is over tasks of the per-seed mean of each task's GLUE score; ms/sample at batch 1 from bench JSON files.
  A task whose teacher is within 10 points of the majority baseline (``stats.weak_tasks``) is shown but left
  out of the average and the tests: it cannot rank methods.
- **Share of the teacher**: a column per task of Table 1 ("no teacher run" where none is among the folders).
- **Tests** of each method against the reference (``multilevel``), per task: over seeds first, over dev
  examples second, every p-value beside its Holm correction (``evaluation/significance.py``).
- **Figure 2, temperature**: score against the soft term's temperature for every method run at several
  (classification tasks: a regression task has no distribution to soften), with seed spread; latency
  against temperature from bench files that timed those models.
- **Figure 3, stability**: per task, each method's mean with the seed standard deviation as error bars.
- **Figure 4, latency and memory** from the bench files.
- **Figure 5, loss curves**: the objective's mean over training rows and over the held-out rows at each
  evaluation, per epoch, for every method on one task.
- **Per-layer weights**: the final learned weights of runs that adapt them.
- **Runs found**: the plain summary (``report.summary``): every run folder found (teachers, students,
  ``retort dse train`` bi-encoders, stages), its scores beside their baselines, its speed, what it started
  from, and where the comparison shows it or why it leaves it out. It comes after the comparison, whose
  table it would otherwise push down by a row per stage of every run; a page with no comparison is this
  list alone.
- **Runs compared**: each one's folder, seed, temperature, selection, score and the command that remakes it.

Here: ``write_report`` and one function per section, in page order (``SECTIONS``). The runs are read by
``report.records``, their numbers made by ``report.stats``, the figures drawn by ``report.charts`` and the
page rendered as HTML and Markdown by ``report.render.Page``.
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retort.errors import RetortError
from retort.machine import cpu_label
from retort.outputs import Input, check_output
from retort.paths import publish_dir, saving
from retort.report import charts
from retort.report.paired import section as _paired_tests
from retort.report.paper_table import section as _paper
from retort.report.records import (
    DEFAULT_T,
    RunRecord,
    attach_bench,
    bench_name,
    find_runs,
    label_runs,
    load_run,
    read_bench,
)
from retort.report.render import MARKER, Page
from retort.report.run_list import section as _run_list
from retort.report.stats import (
    baselines,
    caveats,
    curves_of_one_task,
    learned_layer_weights,
    mean_pm,
    method_table,
    seed_averages,
    task_baselines,
    task_columns,
    teacher_shares,
    weak_tasks,
)
from retort.report.summary import SAYS, common_root, summarize, summary_table
from retort.report.sweep import section as _temperature

# --------------------------------------------------------------------------------------------
# the report


def write_report(
    paths: list[str],
    out: str,
    bench_files: list[str] | None = None,
    reference: str = "multilevel",
    curves_task: str | None = None,
    resamples: int = 2000,
    title: str = "retort: distillation evidence",
    force: bool = False,
    note: str = "",
) -> dict:
    """Write the page (see the module docstring) into ``out``; returns report.json's content. ``out`` is
    checked by the output rule first (``retort.outputs``): not a run read nor a folder holding one, not a
    model or a run folder, not inside one; ``force`` replaces a folder of other files, never a run."""
    dest = Path(out)
    folders = find_runs(paths)
    reads = [*(Input(p, "a run of the page") for p in folders), *(Input(b, "a bench file") for b in
             bench_files or [])]  # fmt: skip
    check_output(dest, "--out", reads=reads, folder=True, makes="report")
    if dest.exists() and any(dest.iterdir()) and not force and not _is_report(dest):
        raise RetortError(f"--out {dest}: a non-empty folder that holds no earlier report; give --force to replace it")
    if not folders:
        raise RetortError(f"no finished run under {', '.join(paths)}")
    runs = label_runs([load_run(p) for p in folders])
    bench = read_bench(bench_files or [])
    attach_bench(runs, bench)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with saving(tmp):
            evidence = _Evidence(runs, summarize(folders, runs, bench), bench, reference, curves_task, resamples,
                                 title, note)  # fmt: skip
            data = _build(Page(tmp), evidence)
        publish_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return data


def _is_report(folder: Path) -> bool:
    """Whether ``folder`` holds a page this command wrote (its ``index.html`` carries ``MARKER``)."""
    f = folder / "index.html"
    return f.is_file() and MARKER in f.read_text(errors="replace")[:400]


@dataclass
class _Evidence:
    """What every section reads: the runs of the comparison, the summary's rows (every run found), the bench
    rows and the options of the report, with Table 1's grouping and task columns made once."""

    runs: list[RunRecord]
    summary: list[dict]
    bench: list[dict]
    reference: str
    curves_task: str | None
    resamples: int
    title: str
    note: str

    def __post_init__(self) -> None:
        self.table1 = method_table(self.runs)
        self.columns = task_columns(self.runs)
        self.baseline = baselines(self.table1, self.columns)
        self.unranked = weak_tasks(self.table1, self.baseline)  # left out of the tests and the average


def _build(page: Page, ev: _Evidence) -> dict:
    """Add every section to the page in order, write report.md, index.html and report.json; returns the
    numbers (report.json's content)."""
    data: dict = {"title": ev.title, "note": ev.note, "runs": len(ev.summary), "compared": len(ev.runs),
                  "reference": ev.reference}  # fmt: skip
    for section in SECTIONS:
        section(page, ev, data)
    (page.out / "report.md").write_text(page.markdown())
    (page.out / "index.html").write_text(page.html(ev.title))
    (page.out / "report.json").write_text(json.dumps(_plain(data), indent=2, allow_nan=False, default=str))
    return data


def _plain(x):
    """``x`` as strict JSON can hold it: numpy numbers as Python ones, NaN and infinities (a d_z with no spread
    over seeds) as null, containers element by element; anything else as is (``default=str`` names it)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# --------------------------------------------------------------------------------------------
# the sections, in page order: each adds its blocks to the page and its numbers to report.json's data


def _header(page: Page, ev: _Evidence, data: dict) -> None:
    """The title, the note, and what the page holds: how many runs, how many compared, when, on what CPU, how
    the compared runs were kept."""
    runs = ev.runs
    dev_selected = [r for r in runs if r.selection == "dev"]
    page.h(1, ev.title)
    if ev.note:
        page.p(ev.note)
    n_dev = len(dev_selected)
    if n_dev:
        kept = (f"Of the runs compared, {len(runs) - n_dev} kept their epoch on held-out training rows (`--val-split`) "
                f"and scored the GLUE dev set once; {n_dev} {'was' if n_dev == 1 else 'were'} selected on dev (their "
                "scores are optimistic: marked † below).")  # fmt: skip
    else:
        kept = ("Every run compared kept its epoch on held-out training rows (`--val-split`) and scored the GLUE dev "
                "set once." if runs else "")  # fmt: skip
    page.p(f"{len(ev.summary)} runs found, {len(runs)} of them in the method comparison; written "
           f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {cpu_label()}. {kept}")  # fmt: skip


def _summary(page: Page, ev: _Evidence, data: dict) -> None:
    """Every run found, one row each (``report.summary``), after the comparison and its figures."""
    page.h(2, "Runs found")
    root = common_root(ev.summary)
    under = f" Run folders (and teachers among them) are named under `{root}`." if root else ""
    page.p(f"{SAYS} Scores and baselines x100; {_timed(ev)}.{under}")
    page.table(*summary_table(ev.summary))
    data["summary"] = ev.summary


def _methods(page: Page, ev: _Evidence, data: dict) -> None:
    """Table 1: per method, every task metric over seeds at the default temperature, the average over tasks
    and the batch-1 latency; one row per task's teacher (teachers of two tasks are two models: no average)."""
    cols = ev.columns
    page.h(2, "Table 1: methods")
    left, swept = (sum(row["comparison"].startswith(w) for row in ev.summary) for w in ("left out", "Figure 2"))
    page.p(f"Compares the distillation methods: one row per method (students at the soft term's default "
           f"temperature T {DEFAULT_T:g}, mean ± sample standard deviation over seeds, x100) and one row per task's "
           "teacher, a column per task metric on the dev set. It leaves out the runs that Runs found (below) marks "
           f"'left out' ({left}, each with its reason) and those at other temperatures ({swept}, in Figure 2 "
           "only).")  # fmt: skip
    if not ev.table1:
        return
    ranked = [t for t in cols if t not in ev.unranked]
    headers = ["method", "seeds"] + [f"{t} {m}" + ("" if s == "dev" else f" ({s})") for t, c in cols.items()
                                     for s, m in c] + ["average" if not ev.unranked else "average (ranked tasks)",
                                                       "ms/sample b1"]  # fmt: skip
    rows, data["table1"] = [], {}
    for label, tasks in ev.table1.items():
        rec: dict = {}
        teacher = label == "teacher"
        named = [(f"teacher ({t}" + (", not ranked)" if t in ev.unranked else ")"), {t: rs})
                 for t, rs in tasks.items()]  # fmt: skip
        for name, group in named if teacher else [(label, tasks)]:
            rows.append([name, "/".join(sorted({str(len(rs)) for rs in group.values()})), *_cells(group, cols, rec)])
            full = [] if teacher else seed_averages({t: rs for t, rs in group.items() if t in ranked}, len(ranked))
            ms = [r.bench["ms_b1"] for rs in group.values() for r in rs if r.bench]
            rows[-1] += [mean_pm(full) if full else "-", f"{np.mean(ms):.2f}" if ms else "-"]
        ms = [r.bench["ms_b1"] for rs in tasks.values() for r in rs if r.bench]
        stand_ins = sorted({r.bench["stand_in"] for rs in tasks.values() for r in rs if r.bench.get("stand_in")})
        data["table1"][label] = {"scores": rec, "average": full, "ms_b1": ms, "ms_b1_timed_on": stand_ins}
    base = ev.baseline
    if base:  # what predicting without the text scores: the floor every method stands on
        rows.append(["baseline (majority class / mean)", "-", *(f"{100 * v:.2f}" if v is not None else "-"
                                                                 for v in base.values()), "-", "-"])  # fmt: skip
        data["baseline"] = base
    page.table(headers, rows)
    data["caveats"] = caveats(ev.table1, base)
    if data["caveats"]:
        page.p("What the data say this table cannot show: " + " ".join(data["caveats"]))
    data["unranked"] = ev.unranked
    over = (
        f"the tasks that can rank methods (not {', '.join(ev.unranked)}: a teacher near the majority baseline)"
        if ev.unranked
        else "tasks"
    )
    several = {t: c[0][0] for t, c in cols.items() if len({s for s, _ in c}) > 1}  # MNLI: matched, mismatched
    first = "".join(f" {t} has more than one dev set: Table 1 shows each; the share table, the figures, the tests and "
                    f"the caveats read the first ({s})." for t, s in several.items())  # fmt: skip
    page.p(f"The average is over {over} of each seed's GLUE task score (mean of a task's metrics), for seeds that "
           f"ran every such task. {_timed(ev)}.{first}")  # fmt: skip


def _timed(ev: _Evidence) -> str:
    """Where the ms/sample columns come from: the bench files' machines."""
    machines = sorted({f"{b['cpu']}, {b['threads']} threads" for b in ev.bench})
    tasks = sorted({b["task"] for b in ev.bench if b.get("task")})
    stand_ins = sum(1 for r in ev.runs if r.bench.get("stand_in"))
    texts = f" on {', '.join(tasks)}'s dev texts (other tasks' runs untimed)" if tasks else ""
    where = ", ".join(machines) or "none"
    return f"ms/sample: PyTorch fp32 at batch 1{texts}, from the bench files given ({where})" + (
        f"; {stand_ins} run(s) not timed themselves (a run kept without its weights, or left out of the bench) show "
        "the timing of a timed run of the same task and shape (the same student options, or a teacher's same base, "
        "and parameters within 0.1%), named in report.json"
        if stand_ins
        else ""
    )


def _cells(tasks: dict[str, list[RunRecord]], cols: dict, rec: dict) -> list[str]:
    """Table 1's cells of one row: each task metric's mean ± std over its runs ("-" where none ran; † where one
    was dev-selected), every value also put in ``rec`` under ``task/split/metric``."""
    out = []
    for task, c in cols.items():
        rs = tasks.get(task, [])
        dagger = "†" if any(r.selection == "dev" for r in rs) else ""
        for s, m in c:
            vals = [r.dev[s][m] for r in rs if s in r.dev]
            out.append(mean_pm(vals) + dagger if vals else "-")
            if vals or f"{task}/{s}/{m}" not in rec:
                rec[f"{task}/{s}/{m}"] = vals
    return out


def _share(page: Page, ev: _Evidence, data: dict) -> None:
    """Each method's primary metric as a share of the teacher's, a column for every task of Table 1 (a task
    whose teacher is not among the folders says so)."""
    teacher = ev.table1.get("teacher", {})
    students = [label for label in ev.table1 if label != "teacher"]
    if not students:
        return
    page.h(3, "Share of the teacher (primary metric)")
    page.p("Each method's primary metric as a percentage of its task's teacher (the mean of the teacher runs of "
           "the task among the folders); a task without one has no share.")  # fmt: skip
    data["share"] = teacher_shares(ev.table1, [t for t in ev.columns if t in teacher])
    data["share_without_teacher"] = [t for t in ev.columns if t not in teacher]
    rows = []
    for label in students:
        row = [label]
        for task in ev.columns:
            vals = data["share"][label].get(task, [])
            if task not in teacher:
                row.append("no teacher run")
            elif vals is None:  # a teacher at or below chance (MCC 0): no share to speak of
                row.append("n/a (teacher ≤ 0)")
            else:
                row.append(f"{100 * np.mean(vals):.1f}%" if vals else "-")
        rows.append(row)
    metric = {t: next(r for r in ev.runs if r.task == t).primary_label() for t in ev.columns}  # the task's primary
    page.table(["method", *(f"{t} {metric[t]}" for t in ev.columns)], rows)


def _stability(page: Page, ev: _Evidence, data: dict) -> None:
    """Figure 3: per task, each student method's mean and seed spread, the teacher dashed."""
    students = {k: v for k, v in ev.table1.items() if k != "teacher"}
    if not (students and ev.columns):
        return
    base = task_baselines(ev.table1, ev.columns)
    fig = charts.stability(students, ev.table1.get("teacher", {}), list(ev.columns), base, ev.unranked)
    page.h(2, "Figure 3: stability across tasks")
    page.figure(fig, "stability.png", "Dev score per task, mean over seeds with one standard deviation as error bars; "
                "dashed: the teacher; dotted: the majority class (regression: the mean predictor).")  # fmt: skip


def _latency_memory(page: Page, ev: _Evidence, data: dict) -> None:
    """Figure 4: every bench row's latency per batch size, peak memory and file size (when bench files were given)."""
    bench = ev.bench
    if not bench:
        return
    page.h(2, "Figure 4: latency and memory")
    rows = []
    for b in bench:
        ms1 = {bs: v for (bs, _t), v in b["ms"].items()}
        rows.append([bench_name(b, ev.runs), b["backend"], b["quantization"], b["threads"],
                     "; ".join(f"b{bs} {v:.2f}" for bs, v in sorted(ms1.items())),
                     f"{b['peak_rss_mb']:.0f}" if b["peak_rss_mb"] else "-",
                     f"{b['file_mb']:.1f}" if b["file_mb"] else "-", b["cpu"]])  # fmt: skip
    page.table(["model", "backend", "quantization", "threads", "ms/sample (p50)", "peak MiB", "file MiB", "CPU"], rows)
    page.figure(charts.latency_memory(bench, [bench_name(b, ev.runs) for b in bench]), "latency_memory.png",
                "Latency at batch 1 and the bench's peak memory; PyTorch fp32 blue, ONNX int8 orange.")  # fmt: skip
    data["bench"] = [{**b, "ms": {f"b{k[0]}_t{k[1]}": v for k, v in b["ms"].items()}} for b in bench]


def _loss_curves(page: Page, ev: _Evidence, data: dict) -> None:
    """Figure 5: training and held-out loss at every evaluation of every method on one task."""
    task, cv = curves_of_one_task(ev.runs, ev.curves_task)
    data["curves"] = {"task": task, "methods": cv}
    if not cv:
        return
    page.h(2, f"Figure 5: training and validation loss ({task})")
    page.p(
        "Each method's own objective: its mean over the training rows since the previous evaluation "
        "(dropout on) and over the held-out `--val-split` rows at the evaluation (dropout off). Objectives "
        "differ between methods, so compare the shapes, not the levels. Thin lines: seeds."
    )
    page.figure(charts.loss_curves(cv), "loss_curves.png", f"Training and validation loss at each evaluation ({task}).")


def _layer_weights(page: Page, ev: _Evidence, data: dict) -> None:
    """The learned per-layer weights, mean over seeds, of runs whose weights moved from uniform."""
    learned = learned_layer_weights(ev.runs)
    if not learned:
        return
    page.h(2, "Per-layer weights (learned)")
    page.p("The last logged weight of each student layer in each term (they sum to the number of layers; "
           "uniform is 1.0), mean over seeds.")  # fmt: skip
    rows, data["layer_weights"] = [], {}
    for label, task, term, arr in learned:
        rows.append([label, task, term, len(arr), " ".join(f"{x:.3f}" for x in arr.mean(0))])
        data["layer_weights"][f"{label}/{task}/{term}"] = arr.mean(0).tolist()
    page.table(["method", "task", "term", "seeds", "weight per student layer (0: embeddings)"], rows)


SECTIONS: list[Callable[[Page, _Evidence, dict], None]] = [
    _header, _methods, _paper, _share, _paired_tests, _temperature, _stability, _latency_memory, _loss_curves,
    _layer_weights, _summary, _run_list,
]  # fmt: skip
