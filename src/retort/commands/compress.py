"""``retort compress``: from a teacher and a dataset to the smallest student that meets a budget (issue #30).

What is built so far is the plan. It times the teacher as the user has it (PyTorch fp32, batch 1, on the
task's dev rows, on this CPU), then the teacher and three probe shapes (random weights: latency does not
depend on them) in the backend that will be shipped, fits the cost model of ``deploy/plan.py`` on those
points, and writes ``OUT/plan.json``: every candidate shape with its predicted latency and size, which are
to be trained (the largest that meet the budget, and the nearest miss) and why each other one is not. It
prints the chosen ones. The probes stay in ``OUT/probes/`` (a second run reuses them). ``--dry-run`` stops
after the plan; the search itself (distil, export, gate and bench each chosen candidate) is not built yet,
and without ``--dry-run`` the command says so after writing the plan.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retort import options, outputs
from retort.data.spec import choose_task
from retort.data.tasks import task_inputs
from retort.deploy.plan import Budget, CostModel, Shape
from retort.deploy.plan import make_plan as plan_candidates
from retort.errors import RetortError
from retort.machine import cpu_label
from retort.models.check import resolve_model_path
from retort.paths import write_atomic
from retort.report.tables import table

BACKENDS = {"onnx-int8": "int8-dynamic", "onnx": "none", "torch": None}  # the export's --quantize (None: none)


def add_parser(sub) -> None:
    """The ``compress`` subcommand."""
    p = sub.add_parser("compress", help="plan (and, to come, find) the smallest student that meets a budget")
    options.add(p, "glue_dir", "skip_bad_rows", "compress_teacher", "source_task", "data", "compress_out", "speedup",
                "latency_ms", "max_params", "backend", "probe_samples", "threads", "plan_only",
                required=("compress_teacher", "compress_out"))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Plan, print the plan, and stop (``--dry-run``) or say what is not built yet."""
    plan = make_plan(args.compress_teacher, args.out, task=args.task, data=args.data, glue_dir=args.glue_dir,
                     speedup=args.speedup, latency_ms=args.latency_ms, max_params=args.max_params,
                     backend=args.backend, samples=args.probe_samples, threads=args.threads)  # fmt: skip
    print_plan(plan)
    print(f"wrote {Path(args.out) / 'plan.json'}")
    if not args.dry_run:
        raise RetortError("the search (distil, export, gate and bench each planned candidate) is not built yet; "
                          "the plan above is in plan.json (--dry-run stops here without this message)")  # fmt: skip
    return 0


def make_plan(
    teacher: str, out: str, *, task: str | None = None, data: str | None = None, glue_dir: str | None = None,
    speedup: float | None = None, latency_ms: float | None = None, max_params: int | None = None,
    backend: str = "onnx-int8", samples: int = 64, threads: int | None = None,
) -> dict:  # fmt: skip
    """Time the teacher and the probes, fit the cost model, plan, and write ``OUT/plan.json``; returns the plan
    (``deploy.plan.make_plan``'s, with the timings it was made from under ``points``)."""
    if task and data:
        raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
    if backend not in BACKENDS:
        raise RetortError(f"--backend {backend}: choose from {', '.join(BACKENDS)}")
    budget = Budget(speedup, latency_ms, max_params)  # a budget is given and each part is a positive number
    source = resolve_model_path(teacher) if Path(teacher).is_dir() else teacher
    chosen = choose_task(task, data, source)
    out_dir = Path(out)
    reads = [outputs.local(teacher, "the teacher"), *task_inputs(chosen, glue_dir)]
    outputs.check_output(out_dir, "--out", reads=reads, folder=True)
    threads = options.all_cores(threads)
    probes = _Probes(source, chosen, out_dir, glue_dir, backend, threads, samples)
    teacher_torch = probes.time(source)  # as the user has it: PyTorch fp32
    shape = probes.teacher_shape
    points = [(shape, teacher_torch["tokens"], probes.time_in_backend("teacher", source)["ms"])]
    for probe in probe_shapes(shape, probes.head_size):
        points.append((probe, teacher_torch["tokens"], probes.time_in_backend(probe.name, probes.build(probe))["ms"]))
    cost = CostModel.fit(points)
    config = probes.teacher_config
    plan = plan_candidates(shape, teacher_torch["ms"], cost, budget, teacher_torch["tokens"], probes.head_size,
                           config.vocab_size, config.max_position_embeddings, chosen.num_labels)  # fmt: skip
    plan.update({
        "task": chosen.name, "backend": backend, "threads": threads, "teacher_folder": str(source),
        "teacher_torch_ms": teacher_torch["ms"], "teacher_backend_ms": points[0][2],
        "points": [{"shape": s.name, "tokens": n, "measured_ms": ms, "predicted_ms": cost.predict(s, n)}
                   for s, n, ms in points],
        "cpu": probes.cpu,
    })  # fmt: skip
    write_atomic(out_dir / "plan.json", json.dumps(plan, indent=2))
    return plan


def probe_shapes(teacher: Shape, head_size: int) -> list[Shape]:
    """Three shapes to time besides the teacher, of three depths and two widths, all well inside it: enough
    points for the cost model's three coefficients, cheap to build and export."""
    step = 2 * head_size
    mid = max(step, (teacher.hidden // 2) // step * step)
    small = step
    deep = max(2, teacher.layers // 2)
    shapes = [Shape(1, mid, mid // head_size, 4 * mid), Shape(2, small, small // head_size, 4 * small),
              Shape(deep + (deep == 2), mid, mid // head_size, 4 * mid)]  # fmt: skip
    return [s for s in dict.fromkeys(shapes) if s != teacher]


class _Probes:
    """The teacher and random models of probe shapes, saved under ``OUT/probes`` (reused when there), exported
    to the backend, and timed at batch 1 on the task's dev rows in this process."""

    def __init__(self, teacher: str, task, out: Path, glue_dir, backend: str, threads: int, samples: int):
        from retort.models.families import width  # noqa: PLC0415
        from retort.models.hf import load_classifier, load_tokenizer  # noqa: PLC0415

        self.teacher, self.task, self.out, self.glue_dir = teacher, task, out, glue_dir
        self.backend, self.threads, self.samples = backend, threads, samples
        self.model = load_classifier(teacher, task, option="--teacher", kind="teacher")
        self.tokenizer = load_tokenizer(teacher, "--teacher")
        self.teacher_config = self.model.config
        layers, hidden, heads, ffn = width(self.teacher_config)
        self.teacher_shape = Shape(layers, hidden, heads, ffn)
        self.head_size = hidden // heads
        self.cpu = ""

    def build(self, shape) -> str:
        """A random model of ``shape`` with the teacher's vocabulary and head, saved (once) for timing."""
        from retort.models.hf import save_model  # noqa: PLC0415
        from retort.models.student import StudentShape, build_student  # noqa: PLC0415

        folder = self.out / "probes" / shape.name / "model"
        if not (folder / "config.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            student = build_student(self.model, StudentShape(shape.layers, shape.hidden, shape.heads, shape.ffn),
                                    init="random")  # fmt: skip
            save_model(student, self.tokenizer, folder)
        return str(folder)

    def time_in_backend(self, name: str, folder: str) -> dict:
        """``folder``'s batch-1 latency in the backend that will be shipped (exported once, under probes/)."""
        if BACKENDS[self.backend] is None:
            return self.time(folder)
        from retort.deploy.export import export_model  # noqa: PLC0415  (torch, onnx)
        from retort.deploy.runtime import is_export_folder  # noqa: PLC0415

        target = self.out / "probes" / name / self.backend
        if not is_export_folder(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            export_model(folder, str(target), "onnx", BACKENDS[self.backend], self.task.name, self.glue_dir,
                         calibration_rows=32, evaluate=False, force=True, threads=self.threads,
                         log=lambda *_: None)  # fmt: skip
        return self.time(str(target))

    def time(self, folder: str) -> dict:
        """Median milliseconds per call at batch 1 on the task's dev rows, and their mean length in tokens."""
        from retort.deploy.bench import bench_folder  # noqa: PLC0415

        result = bench_folder(folder, self.task.name, self.glue_dir, self.threads, [1], self.samples, 5)
        row = result["latency"][0]
        self.cpu = cpu_label()
        return {"ms": row["ms_per_sample_p50"], "tokens": row["seq_len_mean"]}


def print_plan(plan: dict) -> None:
    """The plan in words: the teacher's timings, the cost model's fit, and the candidates to train."""
    t = plan["teacher"]
    print(f"teacher {t['name']} ({t['parameters']:,} parameters): {plan['teacher_torch_ms']:.2f} ms a call in "
          f"PyTorch fp32, {plan['teacher_backend_ms']:.2f} ms in {plan['backend']} (batch 1, {plan['tokens']:.1f} "
          f"tokens on average, {plan['threads']} threads, {plan['cpu']})")  # fmt: skip
    target = plan["target_ms"]
    print(f"budget {plan['budget']}: " + (f"at most {target:.2f} ms a call" if target else "size only"))
    rows = [[p["shape"], f"{p['measured_ms']:.3f}", f"{p['predicted_ms']:.3f}"] for p in plan["points"]]
    print(table(["timed shape", "measured ms", "cost model ms"], rows))
    chosen = [c for c in plan["candidates"] if c["chosen"]]
    rows = [[c["name"], c["start"], f"{c['parameters']:,}", f"{c['predicted_ms']:.3f}", c["role"]] for c in chosen]
    print(table(["to train", "start", "parameters", "predicted ms", "why"], rows) if rows else "nothing to train")
    left = len(plan["candidates"]) - len(chosen)
    print(f"{left} other candidates left out (plan.json says why, each)")
    if not plan["met"]:
        print(f"no candidate is predicted to meet the budget; the closest: {', '.join(plan['closest'])}")
