"""The speed-quality frontier: students of several shapes, each from its best available start, task-
distilled with ``multilevel`` on STS-B, MRPC and SST-2, then timed at batch 1 beside their teacher in one
``retort bench`` run (PyTorch fp32; with ``--onnx`` also exported to ONNX int8 and timed in a second run).
Prints a table per task, marks the Pareto-optimal points (no other point is both faster and better), writes
JSON and a PNG.

    python experiments/frontier.py --teachers runs/teachers --glue-dir ../shared/data/glue \\
        --general runs/narrow --corpus ../shared/data/corpus --general-teacher runs/teachers/STS-B/model \\
        --out runs/frontier --onnx --json docs/data/frontier.json --png docs/img/frontier.png

``--teachers DIR`` holds one fine-tuned teacher per task (``DIR/TASK/model``). Starts: a student as wide as
the teacher is initialised from its layers; a narrower one is pruned from them (``--student-init prune``),
or, when ``--general DIR`` holds ``general-prune-NAME/model`` (a pruned student of that shape after general
distillation, made there on ``--corpus`` from ``--general-teacher`` when missing), starts from that. A shape
is ``LxH`` or ``LxH-SUFFIX`` for another head/MLP choice (``NARROW``: ``4x256-f512`` has an MLP of 512).
Every run: ``--epochs 3`` (``--longer TASK:SHAPE:EPOCHS`` adds a row trained longer, named
``SHAPE-eEPOCHS``), the teacher's outputs cached, the epoch kept on 10% of the training rows
(``--val-split 0.1``) and the GLUE dev set scored once on the kept model; SST-2 is capped at ``--sst2-rows``
training rows (say so with the table). The teacher's score is its run's (dev once when it was kept on
held-out rows, else marked dev-selected). Timing: ``--threads`` threads, ``--rounds`` rounds (medians; each
speed-up the median of the ratios measured within one round).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import Option, Run, add, call, check_options, figure, parser, print_table, save_figure

from retort.data.tasks import get_task, is_task_name
from retort.errors import RetortError
from retort.machine import cpu_label
from retort.paths import check_file_target
from retort.report.speed import pareto

SHAPES = ["4x384", "3x384", "2x384", "4x312", "4x256", "6x192", "4x192"]
# heads and intermediate size of the narrow (pruned) shapes: whole teacher heads of 32 dims where the width
# allows it (8 of 12 for 256), TinyBERT-4's 12 heads and 1200 for 4x312, 12 heads of 16 dims for 192 wide
# dims (4x256-f512: 4x256 with an MLP of 512); a name is LxH, or LxH-SUFFIX for another heads/MLP choice
NARROW = {"4x312": ("12", "1200"), "4x256": ("8", "1024"), "6x192": ("12", "768"), "4x192": ("12", "768"),
          "4x256-f512": ("8", "512")}  # fmt: skip
# the attention term of a student with fewer heads than the teacher compares head-averaged maps
EXTRA = {"4x256": ["--head-average"]}
SCORE = {"STS-B": "pearson", "MRPC": "f1", "SST-2": "accuracy"}  # the GLUE tasks the frontier scores, and how


def score_of(task: str) -> str:
    """The metric the frontier plots for ``task``: ``SCORE``'s, or a task of the user's primary metric."""
    return SCORE.get(task) or get_task(task).primary_metric


BACKENDS = {"torch": "PyTorch fp32", "onnx": "ONNX int8-dynamic"}
EPOCHS = 3  # every row's, but a --longer one's

GENERAL = Option("--general", "folder of general-prune-SHAPE runs (read, or made with --corpus)", metavar="DIR")
GENERAL_TEACHER = Option("--general-teacher", "the teacher model folder of the general stages", metavar="DIR")
SST2_ROWS = Option("--sst2-rows", "SST-2's training rows", type=int, default=20000, low=1)
LONGER = Option("--longer", "one more row: that shape on that task trained for EPOCHS instead of 3 (named "
                "SHAPE-eEPOCHS)", metavar="TASK:SHAPE:EPOCHS")  # fmt: skip
SKIP_BENCH = Option("--skip-bench", "train only (time later, on a quiet machine)", type=None)
ONNX = Option("--onnx", "also export every model to ONNX int8 and time those", type=None)


def lxh(name: str) -> str:
    """The ``--student LxH`` of a shape name (``4x256-f512`` -> ``4x256``)."""
    return name.split("-")[0]


def bench(models: list[str], task: str, glue_dir: str, out: Path, threads: int, rounds: int) -> dict[str, tuple]:
    """(ms/sample p50, speed-up over the first model) at batch 1 of every model, timed in one ``retort bench``
    run of ``rounds`` rounds (medians; the speed-up is the median of the ratios within each round)."""
    if not out.exists():
        call(["bench", "--model", *models, "--task", task, "--glue-dir", glue_dir, "--threads", threads,
              "--batch-sizes", "1", "--samples", "256", "--rounds", rounds, "--json", out])  # fmt: skip
    data = json.loads(out.read_text())
    b1 = {r["model"]: next(x for x in r["latency"] if x["batch_size"] == 1) for r in data["runs"]}
    return {m: (x["ms_per_sample_p50"], x["speedup_vs_first"]) for m, x in b1.items()}


def export_int8(model: str, out: Path, glue_dir: str, threads: int, metric: str) -> float:
    """``retort export --quantize int8-dynamic`` of ``model`` into ``out`` (once); its dev score through
    onnxruntime (the kept model's int8 file, scored once)."""
    if not (out / "retort_export.json").exists():
        call(["export", "--model", model, "--out", out, "--quantize", "int8-dynamic", "--glue-dir", glue_dir,
              "--threads", threads, "--force"])  # fmt: skip
    return json.loads((out / "retort_export.json").read_text())["evaluation"]["export"]["dev"][metric]


def general_stage(shape: str, a: argparse.Namespace) -> Path | None:
    """The pruned, general-distilled start of a narrow ``shape``: ``--general DIR/general-prune-SHAPE``,
    trained there (as ``experiments/narrow.py`` does) when ``--corpus`` is given; None when there is none."""
    if not a.general or shape not in NARROW:
        return None
    out = Path(a.general) / f"general-prune-{shape}"
    if a.corpus and a.general_teacher:
        heads, inter = NARROW[shape]
        Run.of(out, "distill", "--general", *EXTRA.get(lxh(shape), []), corpus=a.corpus, teacher=a.general_teacher,
               student=lxh(shape), student_heads=heads, student_intermediate=inter, method="multilevel",
               threads=a.threads, student_init="prune", corpus_sequences=a.corpus_sequences, epochs=1,
               batch_size=32, lr="1e-4", eval_every=100).make()  # fmt: skip
    return out / "model" if (out / "model").is_dir() else None


def student_run(a: argparse.Namespace, task: str, shape: str, epochs: int, t_width: int) -> tuple[Run, str]:
    """The run of one student shape on one task, and how it starts (teacher layers, pruned, pruned +
    general): as wide as the teacher, from its layers; narrower, from its general stage if there is one."""
    width = int(lxh(shape).split("x")[1])
    general = None if width == t_width else general_stage(shape, a)
    init = "teacher" if width == t_width else (str(general) if general else "prune")
    start = {"teacher": "teacher layers", "prune": "pruned"}.get(init, "pruned + general")
    name = shape if epochs == EPOCHS else f"{shape}-e{epochs}"
    run = Run.of(Path(a.out) / task / name, "distill", *EXTRA.get(lxh(shape), []), task=task, glue_dir=a.glue_dir,
                 teacher=str(Path(a.teachers) / task / "model"), student=lxh(shape), student_init=init,
                 method="multilevel", epochs=epochs, cache_teacher="all", threads=a.threads,
                 val_split="0.1")  # fmt: skip
    if init == "prune" and shape in NARROW:
        run = run.also(student_heads=NARROW[shape][0], student_intermediate=NARROW[shape][1])
    if task == "SST-2":
        run = run.also(max_train_samples=a.sst2_rows)
    return run, start


def train_task(a: argparse.Namespace, task: str) -> list[dict]:
    """Every student of one task, trained unless done; one row each (shape, start, model, score)."""
    t_width = json.loads((Path(a.teachers) / task / "model" / "config.json").read_text())["hidden_size"]
    longer = [(x[1], int(x[2])) for x in (spec.split(":") for spec in a.longer) if x[0] == task]
    rows = []
    for shape, epochs in [*((s, EPOCHS) for s in a.shapes), *longer]:
        run, start = student_run(a, task, shape, epochs, t_width)
        m = run.make()
        rows.append({"shape": run.out.name, "start": start, "model": str(run.model),
                     "score": m["dev_once"]["dev"][score_of(task)], "parameters": m["parameters"]})  # fmt: skip
    return rows


def teacher_score(run: Path, metric: str) -> tuple[float, str]:
    """The teacher's dev score: scored once on its kept model when it was selected on held-out rows, else
    its best dev epoch (marked dev-selected)."""
    m = json.loads((run / "metrics.json").read_text())
    if "dev_once" in m:
        return m["dev_once"]["dev"][metric], "kept on --val-split, dev once"
    return m["best"]["dev"][metric], "dev-selected"


def time_task(a: argparse.Namespace, task: str, rows: list[dict]) -> tuple[list[dict], list[str]]:
    """The teacher and the students of one task timed (PyTorch, and ONNX int8 with ``--onnx``), each
    entry given its speed, share of the teacher's score and Pareto mark per backend; (entries, backends)."""
    teacher = Path(a.teachers) / task
    t_score, t_how = teacher_score(teacher, score_of(task))
    t_params = json.loads((teacher / "metrics.json").read_text())["parameters"]
    entries = [{"shape": "teacher", "start": t_how, "model": str(teacher / "model"), "score": t_score,
                "parameters": t_params}, *rows]  # fmt: skip
    backends = ["torch"]
    ms = bench([e["model"] for e in entries], task, a.glue_dir, Path(a.out) / task / "bench-torch.json", a.threads,
               a.rounds)  # fmt: skip
    for e in entries:
        e["ms_torch_b1"], e["speedup_torch"] = ms[e["model"]]
    if a.onnx:
        backends.append("onnx")
        for e in entries:
            e["onnx_model"] = str(Path(a.out) / task / "onnx-int8" / e["shape"])
            e["score_onnx"] = export_int8(e["model"], Path(e["onnx_model"]), a.glue_dir, a.threads, score_of(task))
        ms = bench([e["onnx_model"] for e in entries], task, a.glue_dir, Path(a.out) / task / "bench-onnx.json",
                   a.threads, a.rounds)  # fmt: skip
        for e in entries:
            e["ms_onnx_b1"], e["speedup_onnx"] = ms[e["onnx_model"]]
    for b in backends:
        score = "score" if b == "torch" else "score_onnx"
        for e in entries:
            e[f"share_of_teacher_{b}"] = e[score] / entries[0][score]
        for e, best in zip(entries, pareto([(e[f"ms_{b}_b1"], e[score]) for e in entries])):
            e[f"pareto_{b}"] = best
    return entries, backends


def print_task(a: argparse.Namespace, task: str, entries: list[dict], backends: list[str]) -> None:
    """One Markdown table per backend: each model's score, share of the teacher's, speed and size."""
    t_how = entries[0]["start"]
    for b in backends:
        score = "score" if b == "torch" else "score_onnx"
        print(
            f"\n{task} dev {score_of(task)} (students: kept on --val-split, dev once; teacher: {t_how}) "
            f"against ms/sample at batch 1, {a.threads} threads, {BACKENDS[b]} ({cpu_label()}); * Pareto-optimal"
        )
        print_table(["student", "start", "score", "% of teacher", "ms b1", "speed-up", "params M"],
                    [[e["shape"] + (" *" if e[f"pareto_{b}"] else ""), e["start"], f"{e[score]:.4f}",
                      f"{100 * e[f'share_of_teacher_{b}']:.1f}", f"{e[f'ms_{b}_b1']:.2f}",
                      f"{e[f'speedup_{b}']:.2f}x", f"{e['parameters'] / 1e6:.1f}"] for e in entries])  # fmt: skip


def check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Before any run starts: one line and exit 2 for an option that cannot work."""
    for task in a.tasks:
        if task not in SCORE and is_task_name(task):
            p.error(f"--tasks {task}: the frontier scores {', '.join(SCORE)} only")
    check_options(p, a, a.tasks)
    for task in a.tasks:
        if not (Path(a.teachers) / task / "model" / "config.json").is_file():
            p.error(f"--teachers {a.teachers}: no {task}/model (a fine-tuned teacher folder per task)")
    for shape in a.shapes:
        layers, _, width = lxh(shape).partition("x")
        if not (layers.isdigit() and width.isdigit() and int(layers) > 0 and int(width) > 0):
            p.error(f"--shapes {shape}: LxH or LxH-SUFFIX, e.g. 4x256 or 4x256-f512")
    for spec in a.longer:
        parts = spec.split(":")
        if len(parts) != 3 or parts[0] not in a.tasks or not parts[2].isdigit() or int(parts[2]) < 1:
            p.error(f"--longer {spec}: TASK:SHAPE:EPOCHS with TASK one of --tasks and EPOCHS 1 or more")
    for option, target in (("--json", a.json), ("--png", a.png)):
        try:
            check_file_target(target, option)
        except RetortError as e:
            p.error(str(e))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked (``check_args``) before anything runs."""
    p = parser(__doc__)
    add(p, "teachers", "glue_dir", GENERAL, "corpus", GENERAL_TEACHER, "corpus_sequences", "out", "tasks", "shapes",
        SST2_ROWS, LONGER, "threads", "rounds", SKIP_BENCH, ONNX, "json", "figure",
        required=["teachers", "glue_dir"], many=["tasks"], any_number=["shapes", "longer"],
        defaults={"teachers": None, "out": "runs/frontier", "tasks": list(SCORE), "shapes": SHAPES, "longer": [],
                  "threads": 2, "rounds": 5})  # fmt: skip
    a = p.parse_args(argv)
    check_args(p, a)
    return a


def main(argv: list[str] | None = None) -> None:
    """Train every student, time them beside their teacher, print the tables, write the JSON and the PNG."""
    a = parse_args(argv)
    result = {"cpu": cpu_label(), "args": vars(a), "tasks": {}}
    for task in a.tasks:
        rows = train_task(a, task)
        if a.skip_bench:
            continue
        entries, backends = time_task(a, task, rows)
        result["tasks"][task] = entries
        print_task(a, task, entries, backends)
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=2))
    if a.png and result["tasks"]:
        plot(result, a.png)


def plot(result: dict, png: str) -> None:
    """One panel per task and backend: dev score against ms/sample, Pareto-optimal points in red."""
    tasks = result["tasks"]
    backends = [b for b in BACKENDS if all(f"ms_{b}_b1" in e for es in tasks.values() for e in es)]
    fig, axes = figure(len(backends), len(tasks), figsize=(5 * len(tasks), 4 * len(backends)), squeeze=False)
    for row, b in zip(axes, backends):
        for ax, (task, entries) in zip(row, tasks.items()):
            score = "score" if b == "torch" else "score_onnx"
            for e in entries:
                teacher = e["shape"] == "teacher"
                ax.scatter(e[f"ms_{b}_b1"], e[score], marker="*" if teacher else "o",
                           color="C3" if e[f"pareto_{b}"] else "C0", s=80 if teacher else 30)  # fmt: skip
                ax.annotate(e["shape"], (e[f"ms_{b}_b1"], e[score]), fontsize=8)
            ax.set_xlabel(f"ms/sample, batch 1, {BACKENDS[b]}")
            ax.set_ylabel(f"dev {score_of(task)}")
            ax.set_title(f"{task}, {BACKENDS[b]}")
    fig.suptitle(f"students of retort ({result['cpu']}); red: Pareto-optimal")
    save_figure(fig, png, dpi=120)


if __name__ == "__main__":
    main()
