"""The search of ``retort compress`` (issue #30): each planned candidate distilled, shipped, scored on held-out
training rows and timed beside the teacher; the smallest that meets the budget published with its frontier
and model card.

Each candidate is trained in stages, each a ``retort distill`` run folder under ``OUT/candidates``: a pruned
candidate with ``--corpus`` first takes TinyBERT's general stage (the teacher's intermediate layers on
corpus text, no labels), then every candidate is task-distilled (multilevel) with its best epoch kept on
rows carved from the training set. A candidate whose task stage misses the quality floor on those rows then
takes a transfer stage (TinyBERT's lever): it goes on from its task model for a quarter of the epochs at half
the rate over its training rows plus twice as many teacher-labelled transfer rows (pairs mined from
``--corpus`` for a pair task, else word-edited copies of its own training rows), and the stage that scores
better on the held-out rows is kept. A finished stage is never trained again, so a stopped search goes on
where it stopped. One progress line a stage says how far the plan is and what is left, from the plan's
predicted training times corrected by the stages measured so far; with ``--hours``, a candidate whose
stages cannot finish inside what is left is not started (the frontier says so).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from retort.commands import bench as bench_command
from retort.commands.compress_card import model_card
from retort.commands.train import train
from retort.config import TrainConfig, from_dict
from retort.data.tasks import carve, get_task, load_split
from retort.deploy.plan import Budget
from retort.errors import ConfigError, RetortError
from retort.models.vocab import prune_vocabulary
from retort.paths import write_atomic
from retort.report.speed import pareto, plot_frontier

BACKENDS = {"onnx-int8": "int8-dynamic", "onnx": "none", "torch": None}  # the export's --quantize (None: none)
GENERAL = {"epochs": 1, "batch_size": 32, "lr": 1e-4, "eval_every": 100}  # the general stage's recipe (frontier's)
TRANSFER = {"epochs": 0.25, "rows": 2, "lr": 0.5}  # the transfer stage, as shares of the task stage's


def stages(cand: dict, out: Path, corpus: str | None) -> list[tuple[str, Path]]:
    """(stage, run folder) of one candidate: ``general`` first for a pruned one when a corpus is given."""
    root = out / "candidates" / cand["name"]
    general = corpus is not None and cand["start"] != "teacher layers"
    return [*([("general", root / "general")] if general else []), ("task", root / "task" if general else root)]


def transfer_epochs(epochs: int) -> int:
    """The transfer stage's epochs: a quarter of the task stage's, at least one."""
    return max(1, round(epochs * TRANSFER["epochs"]))


def transfer_dir(cand: dict, out: Path) -> Path:
    """The run folder of a candidate's transfer stage (beside its own, not inside a run folder)."""
    return out / "candidates" / f"{cand['name']}+transfer"


def best_val(run_dir: Path, metric: str) -> float | None:
    """A finished run's best score on its held-out rows (``--val-split``), else None."""
    try:
        return float(json.loads((run_dir / "metrics.json").read_text())["best"]["val"][metric])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stage_config(cand: dict, stage: str, run_dir: Path, plan: dict, s: dict) -> TrainConfig:
    """The ``retort distill`` run of one stage (``s``: the search's settings)."""
    common = {"kind": "distill", "task": plan["task"], "data": s["data"], "glue_dir": s["glue_dir"],
              "teacher": plan["teacher_folder"], "student": f"{cand['layers']}x{cand['hidden']}",
              "threads": s["threads"], "seed": s["seed"], "out": str(run_dir),
              "objective": {"method": "multilevel"}}  # fmt: skip
    pruned = {"student_heads": cand["heads"], "student_intermediate": cand["ffn"], "student_init": "prune"}
    if stage == "general":
        values = {**common, **pruned, **GENERAL, "general": True, "corpus": s["corpus"],
                  "corpus_sequences": s["corpus_sequences"]}  # fmt: skip
    elif stage == "transfer":  # on from the task stage's model (s["task_dir"]) with s["transfer"] beside its rows
        task_cfg = json.loads((s["task_dir"] / "metrics.json").read_text()).get("config") or {}
        # no teacher cache: over 2 epochs a cache of every layer saves one teacher pass and costs the disk
        # (11 GB for STS-B's 15,522 inputs)
        values = {
            **common,
            "student_init": str(s["task_dir"] / "model"),
            "transfer": [s["transfer"]],
            "epochs": transfer_epochs(s["epochs"]),
            "val_split": s["val_split"],
            "score_dev": False,
            "lr": float(task_cfg.get("lr", TrainConfig.lr)) * TRANSFER["lr"],
            "cache_teacher": "none",
        }
    else:
        general = run_dir.parent / "general" / "model"
        start = ({"student_init": "teacher"} if cand["start"] == "teacher layers" else
                 {"student_init": str(general)} if general.is_dir() else pruned)  # fmt: skip
        values = {
            **common,
            **start,
            "epochs": s["epochs"],
            "val_split": s["val_split"],
            "cache_teacher": "all",
            "score_dev": False,
        }  # only the shipped model is scored on dev, once (``_score_once``)
    return from_dict(TrainConfig, values, "compress")


def _seconds(run_dir: Path) -> float:
    """Wall seconds a stage's run took (finished: metrics.json; stopped half-way: its checkpoint), else 0."""
    for path, key in ((run_dir / "metrics.json", "wall_seconds"),
                      (run_dir / "checkpoint" / "trainer_state.json", "wall_seconds")):  # fmt: skip
        try:
            return float(json.loads(path.read_text()).get(key) or 0.0)
        except (OSError, ValueError, AttributeError):
            continue
    return 0.0


def _clock(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def train_candidates(plan: dict, out: Path, s: dict) -> tuple[list[str], dict[str, str]]:
    """Train every planned candidate's stages that are not done, in the plan's order, with one progress line
    a stage; returns the candidates finished and, for the others, why not (the ``--hours`` budget)."""
    cands = [next(c for c in plan["candidates"] if c["name"] == n) for n in plan["train"]]
    todo = [(c, stage, d) for c in cands for stage, d in stages(c, out, s["corpus"])]
    predicted = {(c["name"], st): c.get("train_s", {}).get(st, 0.0) for c, st, _ in todo}
    budget = s["hours"] * 3600 if s["hours"] else None
    finished, skipped = [], {}

    def spent_so_far() -> float:  # every stage's wall seconds, the transfer stages included
        return sum(_seconds(d) for _, _, d in todo) + sum(_seconds(transfer_dir(c, out)) for c in cands)

    for i, (cand, stage, run_dir) in enumerate(todo, 1):
        if cand["name"] in skipped:
            continue
        done = [(c["name"], st, d) for c, st, d in todo if (d / "metrics.json").is_file()]
        spent = spent_so_far()
        took = sum(_seconds(d) for _, _, d in done)
        guessed = sum(predicted[(n, st)] for n, st, _ in done)
        scale = took / guessed if guessed > 0 and took > 0 else 1.0  # the estimates, corrected by what was measured
        left = [(c["name"], st) for c, st, d in todo[i - 1:] if not (d / "metrics.json").is_file()
                and c["name"] not in skipped]  # fmt: skip
        if not (run_dir / "metrics.json").is_file():
            own = sum(predicted[k] for k in left if k[0] == cand["name"]) * scale - _seconds(run_dir)
            if budget is not None and spent + own > budget:
                skipped[cand["name"]] = (f"not trained: its stages ({_clock(own)} predicted) would not finish inside "
                                         f"--hours {s['hours']:g} ({_clock(spent)} spent)")  # fmt: skip
                print(f"[compress] {cand['name']}: {skipped[cand['name']]}", flush=True)
                continue
            eta = sum(predicted[k] for k in left) * scale - _seconds(run_dir)
            print(f"[compress] stage {i}/{len(todo)}: {cand['name']} {stage} stage into {run_dir}; "
                  f"{_clock(spent)} spent, about {_clock(max(eta, 0))} left", flush=True)  # fmt: skip
            cfg = stage_config(cand, stage, run_dir, plan, s)
            train(cfg, resume=(run_dir / "checkpoint" / "trainer_state.json").is_file(), progress=False)
        if stage == "task":
            finished.append(cand["name"])
            if s.get("floor") is not None:
                lift(cand, run_dir, out, plan, s, None if budget is None else budget - spent_so_far())
    return finished, skipped


def lift(cand: dict, task_dir: Path, out: Path, plan: dict, s: dict, left: float | None) -> None:
    """The transfer stage of a candidate whose task stage missed the floor on the held-out rows, when the
    time ``left`` (seconds; None: no limit) allows it. Its cost is predicted from the task stage's."""
    score, target = best_val(task_dir, s["primary"]), transfer_dir(cand, out)
    if score is None or score >= s["floor"] or (target / "metrics.json").is_file():
        return
    ran = json.loads((task_dir / "metrics.json").read_text())
    epoch_s = _seconds(task_dir) / max(ran.get("epochs") or s["epochs"], 1)  # one epoch of the training rows
    name, primary = cand["name"], s["primary"]

    def cost(longer: float) -> float:  # the rows once and the transfer inputs (``longer`` times as long) twice
        return epoch_s * transfer_epochs(s["epochs"]) * (1 + TRANSFER["rows"] * longer) - _seconds(target)

    def too_long(own: float) -> bool:
        if left is not None and own > left:
            print(f"[compress] {name}: held-out {primary} {score:.4f} < floor {s['floor']:.4f}; no transfer stage "
                  f"({_clock(own)} predicted, {_clock(max(left, 0))} left of --hours)", flush=True)  # fmt: skip
        return left is not None and own > left

    if too_long(cost(1.0)):  # as long as the rows: checked before anything is mined
        return
    source = transfer_set(plan, out, s, TRANSFER["rows"] * int(ran["train_examples"]))
    own = cost(length_ratio(source, get_task(plan["task"]), s))
    if too_long(own):
        return
    print(f"[compress] {name}: held-out {primary} {score:.4f} < floor {s['floor']:.4f}; a transfer stage with "
          f"{source} into {target}, about {_clock(own)}", flush=True)  # fmt: skip
    cfg = stage_config(cand, "transfer", target, plan, {**s, "task_dir": task_dir, "transfer": source})
    train(cfg, resume=(target / "checkpoint" / "trainer_state.json").is_file(), progress=False)


def length_ratio(source: str, task, s: dict) -> float:
    """How much longer a transfer input is than a training row, in characters (1 for copies of the rows):
    mined Wikipedia pairs run longer than STS-B's, and a step costs by length."""
    if source.startswith("aug:"):
        return 1.0
    with open(source, encoding="utf-8") as f:
        lines = [len(line.rstrip("\n").replace("\t", "")) for _, line in zip(range(5000), f)]
    texts = list(training_texts(task, s["glue_dir"], s["val_split"], s["seed"]))
    mine = sum(map(len, texts)) / max(len(texts) / len(task.text_columns), 1)  # characters a row
    return (sum(lines) / max(len(lines), 1)) / max(mine, 1.0)


def transfer_set(plan: dict, out: Path, s: dict, rows: int) -> str:
    """The transfer set of ``rows`` inputs: for a pair task with ``--corpus``, pairs mined from it with the
    teacher as the embedder (made once, ``OUT/transfer/``); else ``aug:TASK:rows``, word-edited copies of the
    rows trained on."""
    task = get_task(plan["task"])
    if task.is_pair and s["corpus"]:
        from retort.distill.mining import mine_corpus  # noqa: PLC0415  (torch)

        path = out / "transfer" / f"mined-{rows}.tsv"
        if not path.is_file():
            try:
                mine_corpus([s["corpus"]], path, rows, plan["teacher_folder"], seed=s["seed"])
            except ConfigError as e:  # a corpus too small for that many pairs: the task's own copies instead
                print(f"[compress] no pairs mined from the corpus ({e}); augmented copies instead", flush=True)
                return f"aug:{task.name}:{rows}"
        return str(path)
    return f"aug:{task.name}:{rows}"


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
    finished, skipped = train_candidates(plan, out, settings)
    backend = plan["backend"]
    rows: list[dict] = []
    pruning = (plan.get("vocabulary") or {}).get("mode") == "task"
    texts = list(training_texts(task, glue_dir, val_split, seed)) if pruning else []  # read once, for every candidate
    for name in finished:
        cand = next(c for c in plan["candidates"] if c["name"] == name)
        runs = stages(cand, out, corpus)
        run_dir, lifted = runs[-1][1], transfer_dir(cand, out)
        scores = {"task": best_val(run_dir, task.primary_metric), "transfer": best_val(lifted, task.primary_metric)}
        if scores["transfer"] is not None:
            runs.append(("transfer", lifted))
            if scores["task"] is None or scores["transfer"] > scores["task"]:
                run_dir = lifted  # kept: better on the held-out rows
        model = vocab_pruned(run_dir / "model", task, texts) if pruning else run_dir / "model"
        kept = f"{name}+transfer" if run_dir == lifted else name  # the export of the stage kept, made once
        shipped = _ship(model, out / "candidates" / f"{kept}-{backend}", backend, task, glue_dir, threads)
        took = sum(_seconds(d) for _, d in runs)
        rows.append({**{k: cand[k] for k in ("name", "layers", "hidden", "heads", "ffn", "parameters",
                                               "predicted_ms")}, "folder": str(shipped), "run": str(run_dir),
                     "start": cand["start"] + (" + general" if runs[0][0] == "general" else "") +
                     (" + transfer set" if run_dir == lifted else ""),
                     "stage_scores": {k: v for k, v in scores.items() if v is not None},
                     "train_s": took, "predicted_train_s": sum(cand.get("train_s", {}).values())})  # fmt: skip
    if not rows:
        raise SearchStopped(skipped)
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
    for r in rows:
        r["heldout"] = heldout_score(r["folder"], task, held)
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


def training_texts(task, glue_dir, val_split: float, seed: int):
    """Every text of the training rows the candidates learn from (the carve's other side)."""
    return (t for ex in carve(load_split(task, "train", glue_dir), val_split, seed)[0].examples for t in ex.texts)


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
