"""``retort compress``: from a teacher and a dataset to the smallest student that meets a budget (issue #30).

First the plan. It times the teacher as the user has it (PyTorch fp32, batch 1, on the
task's dev rows, on this CPU), then the teacher and three probe shapes (random weights: latency does not
depend on them) in the backend that will be shipped, fits the cost model of ``deploy/plan.py`` on those
points, and writes ``OUT/plan.json``: every candidate shape with its predicted latency and size, which are
to be trained (the largest that meet the budget, and the nearest miss) and why each other one is not. It
prints the chosen ones. The probes stay in ``OUT/probes/`` (a second run reuses them). ``--dry-run`` stops
after the plan.

Then the search. Each planned candidate is distilled from the teacher (multilevel; the teacher's layers as
the start when as wide, pruning otherwise) with its best epoch kept on rows carved from the training set
(``--val-split``, seeded), exported to the backend, and scored on those held-out rows beside the teacher.
All of them, the teacher and the teacher's own export are then timed in one ``retort bench`` run with
rounds. The shipped model is the one with the fewest parameters that meets the measured latency and the
quality floor (``--max-drop`` in the metric's units, or ``--max-drop-percent``, on the held-out rows); it is
copied to ``OUT/model`` and described in ``OUT/README.md`` (a model card) and ``OUT/frontier.json`` (every
candidate). A finished candidate is never trained again (a stopped search continues). No candidate meeting
the budget ends with exit 3, naming the closest, the frontier kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from retort import options, outputs
from retort.commands import bench as bench_command
from retort.commands.train import train
from retort.config import TrainConfig, from_dict
from retort.data.spec import choose_task
from retort.data.tasks import carve, get_task, load_split, task_inputs
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
    p = sub.add_parser("compress", help="the smallest student that meets a budget: planned, distilled, measured")
    options.add(p, "glue_dir", "skip_bad_rows", "compress_teacher", "source_task", "data", "compress_out", "speedup",
                "latency_ms", "max_params", "max_drop", "max_drop_percent", "backend", "compress_epochs",
                "probe_samples", "compress_rounds", "shapes", "threads", "plan_only",
                required=("compress_teacher", "compress_out"))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Plan (or take the plan a stopped search made with the same options), print it, stop with ``--dry-run``,
    else search."""
    if args.max_drop is not None and args.max_drop_percent is not None:
        raise RetortError("--max-drop and --max-drop-percent: give one (points of the metric, or a share)")
    argv = remake_words(args)
    plan = _saved_plan(Path(args.out) / "plan.json", argv)
    if plan is not None:
        source = resolve_model_path(args.compress_teacher) if Path(args.compress_teacher).is_dir() else None
        choose_task(args.task, args.data, source, "--teacher")  # a task of the user's is registered again
        print(f"reusing {Path(args.out) / 'plan.json'} (made with the same options; remove it to plan again)")
    else:
        plan = make_plan(args.compress_teacher, args.out, task=args.task, data=args.data, glue_dir=args.glue_dir,
                         speedup=args.speedup, latency_ms=args.latency_ms, max_params=args.max_params,
                         backend=args.backend, samples=args.probe_samples, threads=args.threads,
                         keep=args.shapes, argv=argv)  # fmt: skip
        print(f"wrote {Path(args.out) / 'plan.json'}")
    print_plan(plan)
    if args.dry_run:
        return 0
    if not plan["train"]:
        print(f"retort compress: no candidate is predicted to meet the budget; the closest: "
              f"{', '.join(plan.get('closest', []))}", file=sys.stderr)  # fmt: skip
        return 3
    drop = (args.max_drop_percent / 100, True) if args.max_drop_percent is not None else (
        (args.max_drop, False) if args.max_drop is not None else None)  # fmt: skip
    frontier = search(plan, Path(args.out), data=args.data, glue_dir=args.glue_dir, max_drop=drop,
                      epochs=args.compress_epochs, rounds=args.rounds, threads=options.all_cores(args.threads),
                      samples=args.probe_samples)  # fmt: skip
    print_frontier(frontier)
    if frontier["shipped"] is None:
        print(f"retort compress: no candidate met the budget as measured; the closest: "
              f"{', '.join(frontier['closest'])} (frontier.json has them all)", file=sys.stderr)  # fmt: skip
        return 3
    print(f"wrote {Path(args.out) / 'model'} ({frontier['shipped']}), README.md, frontier.json")
    return 0


def _saved_plan(path: Path, argv: list[str]) -> dict | None:
    """The plan at ``path`` when it was made with the same options (a stopped search continues on it, so
    timing noise cannot change which shapes it trains); None otherwise."""
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) and plan.get("argv") == argv and "candidates" in plan else None


def remake_words(args: argparse.Namespace) -> list[str]:
    """The options that make this search again, as words (the model card's last line)."""
    words = ["--teacher", args.compress_teacher, "--out", args.out, "--backend", args.backend,
             "--epochs", str(args.compress_epochs)]  # fmt: skip
    for flag, value in (("--task", args.task), ("--data", args.data), ("--glue-dir", args.glue_dir),
                        ("--speedup", args.speedup), ("--latency-ms", args.latency_ms),
                        ("--max-params", args.max_params), ("--max-drop", args.max_drop),
                        ("--max-drop-percent", args.max_drop_percent), ("--shapes", args.shapes)):  # fmt: skip
        if value is not None:
            words += [flag, str(value)]
    return words


def make_plan(
    teacher: str, out: str, *, task: str | None = None, data: str | None = None, glue_dir: str | None = None,
    speedup: float | None = None, latency_ms: float | None = None, max_params: int | None = None,
    backend: str = "onnx-int8", samples: int = 64, threads: int | None = None, keep: int = 3,
    argv: list[str] | None = None,
) -> dict:  # fmt: skip
    """Time the teacher and the probes, fit the cost model, plan, and write ``OUT/plan.json``; returns the plan
    (``deploy.plan.make_plan``'s, with the timings it was made from under ``points``)."""
    if task and data:
        raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
    if backend not in BACKENDS:
        raise RetortError(f"--backend {backend}: choose from {', '.join(BACKENDS)}")
    budget = Budget(speedup, latency_ms, max_params)  # a budget is given and each part is a positive number
    source = resolve_model_path(teacher) if Path(teacher).is_dir() else teacher
    chosen = choose_task(task, data, source, "--teacher")
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
                           config.vocab_size, config.max_position_embeddings, chosen.num_labels, keep)  # fmt: skip
    plan.update({
        "task": chosen.name, "backend": backend, "threads": threads, "teacher_folder": str(source),
        "teacher_torch_ms": teacher_torch["ms"], "teacher_backend_ms": points[0][2],
        "points": [{"shape": s.name, "tokens": n, "measured_ms": ms, "predicted_ms": cost.predict(s, n)}
                   for s, n, ms in points],
        "cpu": probes.cpu, "argv": argv or [],
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


# --------------------------------------------------------------------------------------------
# the search


def search(
    plan: dict, out: Path, *, data: str | None, glue_dir: str | None, max_drop: tuple[float, bool] | None, epochs: int,
    rounds: int, threads: int, samples: int, seed: int = 42, val_split: float = 0.1,
) -> dict:  # fmt: skip
    """Distil, export and score each planned candidate on held-out training rows, bench them all beside the
    teacher in one run, pick the smallest that meets the budget, and write ``OUT/model``, ``OUT/frontier.json``
    and ``OUT/README.md``. Returns the frontier record."""
    drop = max_drop  # (amount, relative): 0.01 of the metric, or a share of the teacher's held-out score
    task = get_task(plan["task"])
    teacher = plan["teacher_folder"]
    backend = plan["backend"]
    rows: list[dict] = []
    for name in plan["train"]:
        cand = next(c for c in plan["candidates"] if c["name"] == name)
        run_dir = out / "candidates" / name
        if not (run_dir / "metrics.json").is_file():
            cfg = from_dict(TrainConfig, {
                "kind": "distill", "task": task.name, "data": data, "glue_dir": glue_dir, "teacher": teacher,
                "student": f"{cand['layers']}x{cand['hidden']}", "student_heads": cand["heads"],
                "student_intermediate": cand["ffn"],
                "student_init": "teacher" if cand["start"] == "teacher layers" else "prune",
                "epochs": epochs, "val_split": val_split, "seed": seed, "threads": threads, "out": str(run_dir),
                "objective": {"method": "multilevel"},
            }, "compress")  # fmt: skip
            print(f"[compress] {name}: distilling into {run_dir}", flush=True)
            train(cfg, resume=(run_dir / "checkpoint" / "trainer_state.json").is_file(), progress=False)
        shipped = _ship(run_dir / "model", out / "candidates" / f"{name}-{backend}", backend, task, glue_dir, threads)
        rows.append({**{k: cand[k] for k in ("name", "layers", "hidden", "heads", "ffn", "start", "parameters",
                                               "predicted_ms")}, "folder": str(shipped)})  # fmt: skip
    teacher_export = _ship(Path(teacher), out / "probes" / "teacher" / backend, backend, task, glue_dir, threads)
    held = heldout_rows(task, glue_dir, val_split, seed)
    teacher_score = heldout_score(teacher, task, held)
    for r in rows:
        r["heldout"] = heldout_score(r["folder"], task, held)
    models = [teacher, *([str(teacher_export)] if str(teacher_export) != teacher else []), *(r["folder"] for r in rows)]
    timed = bench_command.bench(models, task=task.name, glue_dir=glue_dir, threads=[threads], batch_sizes=[1],
                                samples=samples, rounds=rounds, json_out=str(out / "bench.json"),
                                png=str(out / "frontier-bench.png"))  # fmt: skip
    ms = {r["model"]: r["latency"][0]["ms_per_sample_p50"] for r in timed["runs"]}
    teacher_ms, teacher_backend_ms = ms[teacher], ms[models[1]]
    target = plan["target_ms"]
    primary = task.primary_metric
    floor = None
    if drop is not None:
        amount, relative = drop
        floor = teacher_score[primary] * (1 - amount) if relative else teacher_score[primary] - amount
    for r in rows:
        r["measured_ms"] = ms[r["folder"]]
        r["speedup_vs_teacher_torch"] = teacher_ms / r["measured_ms"]
        r["speedup_vs_teacher_backend"] = teacher_backend_ms / r["measured_ms"]
        r["share_of_teacher"] = r["heldout"][primary] / teacher_score[primary] if teacher_score[primary] else None
        why = []
        if target is not None and r["measured_ms"] > target:
            why.append(f"measured {r['measured_ms']:.2f} ms > {target:.2f} ms")
        if plan["budget"].get("max_params") and r["parameters"] > plan["budget"]["max_params"]:
            why.append("too many parameters")
        if floor is not None and r["heldout"][primary] < floor:
            why.append(f"held-out {primary} {r['heldout'][primary]:.4f} < floor {floor:.4f}")
        r["meets"], r["why_not"] = not why, "; ".join(why)
    meeting = sorted((r for r in rows if r["meets"]), key=lambda r: (r["parameters"], r["measured_ms"]))
    shipped = meeting[0] if meeting else None
    frontier = {
        "task": task.name, "backend": backend, "budget": plan["budget"], "target_ms": target,
        "max_drop": None if drop is None else (f"{drop[0]:.2%} of the teacher's score" if drop[1] else
                                                f"{drop[0]:g} of {task.primary_metric}"),
        "floor": floor, "primary_metric": primary, "heldout_rows": len(held.examples),
        "teacher": {"folder": teacher, "torch_ms": teacher_ms, "backend_ms": teacher_backend_ms,
                    "backend_folder": str(models[1]), "heldout": teacher_score},
        "candidates": rows, "shipped": shipped["name"] if shipped else None, "cpu": plan["cpu"],
        "threads": threads, "rounds": rounds,
        "closest": [r["name"] for r in sorted(rows, key=lambda r: r["measured_ms"])[:3]],
        "cost_model_errors": {r["name"]: (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows},
    }  # fmt: skip
    if shipped:
        _publish(Path(shipped["folder"]), out / "model")
        frontier["scored_once"] = _score_once(out / "model", task, glue_dir, out / "candidates" / shipped["name"])
    write_atomic(out / "frontier.json", json.dumps(frontier, indent=2))
    write_atomic(out / "README.md", model_card(frontier, plan))
    return frontier


def _ship(model_dir: Path, target: Path, backend: str, task, glue_dir, threads: int) -> Path:
    """The model as it ships in ``backend``: the PyTorch folder itself, or its export (made once)."""
    if BACKENDS[backend] is None:
        return model_dir
    from retort.deploy.export import export_model  # noqa: PLC0415  (torch, onnx)
    from retort.deploy.runtime import is_export_folder  # noqa: PLC0415

    if not is_export_folder(target):
        export_model(str(model_dir), str(target), "onnx", BACKENDS[backend], task.name, glue_dir, calibration_rows=64,
                     evaluate=False, force=True, threads=threads, log=lambda *_: None)  # fmt: skip
    return target


def heldout_rows(task, glue_dir, val_split: float, seed: int):
    """The training rows each candidate's best epoch was kept on (the runs' ``--val-split`` carve, redone)."""
    return carve(load_split(task, "train", glue_dir), val_split, seed)[1]


def heldout_score(folder, task, split) -> dict:
    """A PyTorch or export folder's metrics on the held-out rows."""
    import numpy as np  # noqa: PLC0415

    from retort.evaluation.folder import open_predictor  # noqa: PLC0415  (torch or onnxruntime)
    from retort.evaluation.metrics import compute_metrics, predictions  # noqa: PLC0415

    predictor = open_predictor(str(folder), task.name)
    logits = predictor.logits(predictor.inputs(split), 128, None)
    return compute_metrics(task.metrics, predictions(task, logits), np.asarray([ex.label for ex in split.examples]))


def _score_once(model: Path, task, glue_dir, run_dir: Path) -> dict:
    """The shipped model on the split kept out of every choice: a task's test split when it is labelled (a task
    of the user's), else its dev set, which the chosen run scored once at its end (``dev_once``)."""
    from retort.evaluation.folder import evaluate_folder  # noqa: PLC0415

    if not task.is_glue and "test" in dict(task.files):
        try:
            result = evaluate_folder(str(model), task.name, "test", glue_dir)
            return {"split": "test", "results": result["results"], "baseline": result["baseline"]}
        except RetortError:  # an unlabelled test split
            pass
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"split": "dev (the chosen run's dev_once; PyTorch)", "results": metrics.get("dev_once"),
            "baseline": {k: v for k, v in (metrics.get("baseline") or {}).items() if k != "val"}}  # fmt: skip


def _publish(source: Path, target: Path) -> None:
    """Copy the shipped folder to ``target`` under a temporary name, then rename."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def print_frontier(frontier: dict) -> None:
    """Every candidate as measured: held-out score, latency, ratios, and whether it met the budget."""
    primary = frontier["primary_metric"]
    t = frontier["teacher"]
    rows = [["teacher (torch)", "", f"{t['heldout'][primary]:.4f}", f"{t['torch_ms']:.3f}", "1.00x", "", ""],
            [f"teacher ({frontier['backend']})", "", "", f"{t['backend_ms']:.3f}",
             f"{t['torch_ms'] / t['backend_ms']:.2f}x", "1.00x", ""]]  # fmt: skip
    for r in frontier["candidates"]:
        rows.append([r["name"], f"{r['parameters']:,}", f"{r['heldout'][primary]:.4f}", f"{r['measured_ms']:.3f}",
                     f"{r['speedup_vs_teacher_torch']:.2f}x", f"{r['speedup_vs_teacher_backend']:.2f}x",
                     "yes" if r["meets"] else r["why_not"]])  # fmt: skip
    print(table(["model", "parameters", f"held-out {primary}", "ms b1 p50", "vs teacher torch",
                 f"vs teacher {frontier['backend']}", "meets the budget"], rows))  # fmt: skip


def model_card(frontier: dict, plan: dict) -> str:
    """``OUT/README.md``: what the shipped model is, the budget and what was met, its scores beside the
    baseline, its speed on the named CPU, how to load it, and how to remake it."""
    primary = frontier["primary_metric"]
    shipped = next((r for r in frontier["candidates"] if r["name"] == frontier["shipped"]), None)
    t = frontier["teacher"]
    lines = [f"# {frontier['task']}: a distilled student ({frontier['backend']})", ""]
    if shipped is None:
        lines += ["No candidate met the budget; see frontier.json.", ""]
        return "\n".join(lines)
    once = frontier.get("scored_once") or {}
    lines += [
        f"- Shape {shipped['name']} ({shipped['layers']} layers, width {shipped['hidden']}, {shipped['heads']} heads, "
        f"FFN {shipped['ffn']}), {shipped['parameters']:,} parameters, {shipped['start']}, distilled (multilevel) "
        f"from `{t['folder']}`.",
        f"- Budget asked: {frontier['budget']}, quality floor {frontier['max_drop'] or 'none'}; target "
        f"{frontier['target_ms']:.3f} ms a call."
        if frontier["target_ms"]
        else f"- Budget asked: {frontier['budget']}.",
        f"- Held-out {primary} ({frontier['heldout_rows']} training rows kept out of training, which chose the epoch "
        f"and the model): {shipped['heldout'][primary]:.4f}, teacher {t['heldout'][primary]:.4f}.",
        f"- Scored once, after the choice, on {once.get('split')}: {json.dumps(once.get('results'))}; "
        f"baseline (majority class or mean): {json.dumps(once.get('baseline'))}.",
        f"- Speed, batch 1, p50 over {frontier['rounds']} rounds, {frontier['threads']} threads, {frontier['cpu']}: "
        f"{shipped['measured_ms']:.3f} ms; the teacher {t['torch_ms']:.3f} ms in PyTorch fp32 "
        f"({shipped['speedup_vs_teacher_torch']:.2f}x, mixed backends) and {t['backend_ms']:.3f} ms as its own "
        f"{frontier['backend']} export ({shipped['speedup_vs_teacher_backend']:.2f}x, same backend).",
        "",
        "Load it:",
        "",
        "```python",
        "import retort",
        "retort.predict('model', ['a text'])   # label names with probabilities (scores for regression)",
    ]
    if frontier["backend"] != "torch":
        lines += ["from retort.deploy.runtime import OnnxModel   # onnxruntime, tokenizers, numpy only",
                  "OnnxModel('model').predict(['a text'])"]  # fmt: skip
    else:
        lines += ["from transformers import AutoModelForSequenceClassification",
                  "AutoModelForSequenceClassification.from_pretrained('model')"]  # fmt: skip
    lines += ["```", "", "Remake it: `retort compress " + " ".join(plan.get("argv", [])) + "`", ""]
    return "\n".join(lines)
