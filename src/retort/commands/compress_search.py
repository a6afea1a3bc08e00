"""The search of ``retort compress`` (issue #30): each planned candidate distilled, shipped, scored on held-out
training rows and timed beside the teacher; the smallest that meets the budget published with its frontier
and model card.

Each candidate is trained in stages (``commands/compress_stages.py``: a general stage, a task stage, a
transfer stage, as its task and ``--corpus`` call for), every stage keeping its best epoch on rows carved from
the training set, and the stage that scores better there is the one shipped: exported to ``--backend``,
scored on the held-out rows, timed beside the teacher and its own export in one bench run. The dev (or a
user's test) split is scored once, on the shipped model only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from retort.commands import bench as bench_command
from retort.commands.compress_card import model_card
from retort.commands.compress_stages import (
    best_val,
    mines_pairs,
    seconds_of,
    stage_chain,
    stages,
    train_candidates,
    training_texts,
)
from retort.data.tasks import carve, get_task, load_split
from retort.deploy.plan import Budget
from retort.errors import RetortError
from retort.models.vocab import prune_vocabulary
from retort.paths import write_atomic
from retort.report.speed import pareto, plot_frontier

BACKENDS = {"onnx-int8": "int8-dynamic", "onnx": "none", "torch": None}  # the export's --quantize (None: none)


def search(
    plan: dict, out: Path, *, data: str | None, glue_dir: str | None, max_drop: tuple[float, bool] | None, epochs: int,
    rounds: int, threads: int, samples: int, corpus: str | None = None, corpus_sequences: int | None = None,
    hours: float | None = None, seed: int = 42, val_split: float = 0.1,
) -> dict:  # fmt: skip
    """Distil, export and score each planned candidate on held-out training rows, bench them all beside the
    teacher in one run, pick the smallest that meets the budget, and write ``OUT/model``, ``OUT/frontier.json``
    and ``OUT/README.md``. Returns the frontier record."""
    task = get_task(plan["task"])
    settings = dict(data=data, glue_dir=glue_dir, epochs=epochs, threads=threads, seed=seed, val_split=val_split,
                    corpus=corpus, corpus_sequences=corpus_sequences, hours=hours, primary=task.primary_metric,
                    floor=None)  # fmt: skip
    held = heldout_rows(task, glue_dir, val_split, seed)  # the rows every choice is made on, the teacher's score there
    teacher_score = heldout_score(plan["teacher_folder"], task, held)
    if max_drop is not None:  # the floor, which also decides whether a transfer stage is tried
        settings["floor"] = floor_of(teacher_score[task.primary_metric], max_drop)
    backend = plan["backend"]
    pruning = (plan.get("vocabulary") or {}).get("mode") == "task"
    texts = list(training_texts(task, glue_dir, val_split, seed)) if pruning else []  # read once, for every candidate

    def shipped_form(label: str, run_dir: Path) -> Path:  # a stage's model as it would ship (made once)
        model = vocab_pruned(run_dir / "model", task, texts) if pruning else run_dir / "model"
        return _ship(model, out / "candidates" / f"{label}-{backend}", backend, task, glue_dir, threads)

    scored: dict[str, dict] = {}  # shipped folder -> its held-out metrics, scored once and passed on to measure

    def judge(label: str, run_dir: Path) -> float:  # its held-out score as it ships: rounds and choice go by it
        folder = str(shipped_form(label, run_dir))
        if folder not in scored:
            scored[folder] = heldout_score(folder, task, held)
        return scored[folder][task.primary_metric]

    finished, skipped = train_candidates(plan, out, {**settings, "judge": judge})
    rows: list[dict] = []
    pairs = mines_pairs(task, corpus)
    for name in finished:
        cand = next(c for c in plan["candidates"] if c["name"] == name)
        runs = stages(cand, out, corpus, pairs)
        chain = stage_chain(cand, out, corpus, pairs)
        scores = {n: v for n, d, _ in chain if (v := best_val(d, task.primary_metric)) is not None}
        runs += [(n, d) for n, d, _ in chain[1:] if n in scores]
        label = {n: lab for n, _, lab in chain}
        as_shipped = {n: judge(label[n], d) for n, d, _ in chain if n in scores}
        # kept: the stage better on the held-out rows as it ships (ties: the earlier)
        kept = max(as_shipped, key=lambda n: (as_shipped[n], -list(as_shipped).index(n))) if as_shipped else "task"
        run_dir = next(d for n, d, _ in chain if n == kept)
        shipped = shipped_form(label[kept], run_dir)
        took = sum(seconds_of(d) for _, d in runs)
        rows.append({**{k: cand[k] for k in ("name", "layers", "hidden", "heads", "ffn", "parameters",
                                               "predicted_ms")}, "folder": str(shipped), "run": str(run_dir),
                     "start": cand["start"] + (" + general" if runs[0][0] == "general" else "") +
                     " + transfer set" + ("" if kept == "task" else f", {kept}"),
                     "stage_scores": scores, "stage_scores_shipped": as_shipped, "kept_stage": kept,
                     "train_s": took, "predicted_train_s": sum(cand.get("train_s", {}).values())})  # fmt: skip
    if not rows:
        raise SearchStopped(skipped)
    for r in rows:  # the kept stage's score as judged above, when it was (the same folder, not scored again)
        if r["folder"] in scored:
            r["heldout"] = scored[r["folder"]]
    return measure(plan, out, rows, skipped, task=task, glue_dir=glue_dir, max_drop=max_drop, rounds=rounds,
                   threads=threads, samples=samples, held=held, teacher_score=teacher_score)  # fmt: skip


def floor_of(teacher: float, max_drop: tuple[float, bool]) -> float:
    """The least score allowed: the teacher's less ``max_drop`` (points, or a share of it when relative)."""
    amount, relative = max_drop
    return teacher * (1 - amount) if relative else teacher - amount


class SearchStopped(RetortError):
    """No candidate could be trained inside ``--hours``."""

    def __init__(self, skipped: dict[str, str]):
        super().__init__("no candidate was trained: " + "; ".join(f"{n} {why}" for n, why in skipped.items()))


def measure(plan: dict, out: Path, rows: list[dict], skipped: dict[str, str], *, task, glue_dir, max_drop,
            rounds: int, threads: int, samples: int, held, teacher_score: dict) -> dict:  # fmt: skip
    """Score the trained candidates on the held-out rows, time them beside the teacher and its own export in
    one bench run, choose, publish, and write ``frontier.json`` and ``README.md``."""
    teacher, backend = plan["teacher_folder"], plan["backend"]
    teacher_export = _ship(Path(teacher), out / "probes" / "teacher" / backend, backend, task, glue_dir, threads)
    for r in rows:  # a row the search judged carries its score already
        r["heldout"] = r.get("heldout") or heldout_score(r["folder"], task, held)
    models = [teacher, *([str(teacher_export)] if str(teacher_export) != teacher else []), *(r["folder"] for r in rows)]
    ms = least_medians(_timed(models, out, task, glue_dir, threads, samples, rounds))
    teacher_ms, teacher_backend_ms = ms[teacher], ms[models[1]]
    # the budget against the teachers as timed in this bench run (the ratios it reports), not the plan's timings
    target = Budget(**plan["budget"]).target_ms(teacher_ms, teacher_backend_ms) if plan["target_ms"] else None
    primary = task.primary_metric
    floor = None if max_drop is None else floor_of(teacher_score[primary], max_drop)
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
        "planned_target_ms": plan["target_ms"],
        "max_drop": None if max_drop is None else (f"{max_drop[0]:.2%} of the teacher's score" if max_drop[1] else
                                                    f"{max_drop[0]:g} of {task.primary_metric}"),
        "floor": floor, "primary_metric": primary, "heldout_rows": len(held.examples),
        "teacher": {"folder": teacher, "torch_ms": teacher_ms, "backend_ms": teacher_backend_ms,
                    "backend_folder": str(models[1]), "heldout": teacher_score},
        "candidates": rows, "not_trained": skipped, "shipped": shipped["name"] if shipped else None,
        "cpu": plan["cpu"], "threads": threads, "rounds": rounds,
        "closest": [r["name"] for r in sorted(rows, key=lambda r: r["measured_ms"])[:3]],
        "cost_model_errors": {r["name"]: (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows},
        # the same, each prediction scaled by the teacher export's time in this bench over its time in the plan:
        # this machine's speed drifts between the two, and the budget is a ratio to that teacher
        "cost_model_errors_drift_corrected": {
            r["name"]: (r["predicted_ms"] * teacher_backend_ms / plan["teacher_backend_ms"] - r["measured_ms"])
            / r["measured_ms"] for r in rows},
        "train_seconds": sum(r["train_s"] for r in rows),
    }  # fmt: skip
    if shipped:
        _publish(Path(shipped["folder"]), out / "model")
        frontier["scored_once"] = _score_once(out / "model", task, glue_dir)
    for r, on in zip(rows, pareto([(r["measured_ms"], r["heldout"][primary]) for r in rows])):
        r["pareto"] = on
    write_atomic(out / "frontier.json", json.dumps(frontier, indent=2))
    plot_frontier(frontier, out / "frontier.png")
    write_atomic(out / "README.md", model_card(frontier, plan))
    return frontier


def least_medians(bench: dict) -> dict[str, float]:
    """Model -> its batch-1 ms in a ``retort bench`` result: the least of its rounds' medians, as the plan and
    the verdict both time (on a shared machine noise only adds time)."""
    return {r["model"]: min(r["latency"][0].get("rounds_p50") or [r["latency"][0]["ms_per_sample_p50"]])
            for r in bench["runs"]}  # fmt: skip


def _timed(models: list[str], out: Path, task, glue_dir, threads: int, samples: int, rounds: int) -> dict:
    """One ``retort bench`` run of the teacher, its export and every candidate (``OUT/bench.json``); a finished
    search run again takes the bench it made of the same models (a changed set is timed again, all together)."""
    try:
        saved = json.loads((out / "bench.json").read_text())
        if (saved["models"], saved["rounds"], saved["environment"]["threads"]) == (models, rounds, threads):
            return saved
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    return bench_command.bench(models, task=task.name, glue_dir=glue_dir, threads=[threads], batch_sizes=[1],
                               samples=samples, rounds=rounds, json_out=str(out / "bench.json"),
                               png=str(out / "frontier-bench.png"))  # fmt: skip


def vocab_pruned(model_dir: Path, task, texts: list[str]) -> Path:
    """The candidate as it ships with ``--vocab task``: a copy beside it that keeps only the word embeddings of
    ``texts`` (the rows it was trained on) and every character (``models/vocab.py``; made once, under a
    temporary name, then renamed), so the held-out rows score what pruning does to words it did not see."""
    target = model_dir.with_name("model-vocab")
    if (target / "config.json").is_file():
        return target
    from retort.models.hf import load_classifier  # noqa: PLC0415

    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)  # the files pruning does not write (task.json) come along
    prune_vocabulary(load_classifier(str(model_dir), task), model_dir, texts, tmp)
    tmp.rename(target)
    return target


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


def _score_once(model: Path, task, glue_dir) -> dict:
    """The shipped model, as shipped (its export), on the split kept out of every choice: a task's test split
    when it is labelled (a task of the user's), else its dev set. No candidate stage scores dev (``score_dev``
    off): this is the one dev score of the search."""
    from retort.evaluation.folder import evaluate_folder  # noqa: PLC0415

    if not task.is_glue and "test" in dict(task.files):
        try:
            result = evaluate_folder(str(model), task.name, "test", glue_dir)
            return {"split": "test", "results": result["results"], "baseline": result["baseline"]}
        except RetortError:  # an unlabelled test split
            pass
    result = evaluate_folder(str(model), task.name, "dev", glue_dir)
    return {"split": "dev", "results": result["results"], "baseline": result["baseline"]}


def _publish(source: Path, target: Path) -> None:
    """Copy the shipped folder to ``target`` under a temporary name, then rename."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
