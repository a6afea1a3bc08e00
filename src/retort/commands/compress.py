"""``retort compress``: from a teacher and a dataset to the smallest student that meets a budget (issue #30).

First the plan. It times the teacher as the user has it (PyTorch fp32, batch 1, on the
task's dev rows, on this CPU), then the teacher and three probe shapes (random weights: latency does not
depend on them) in the backend that will be shipped, fits the cost model of ``deploy/plan.py`` on those
points, and writes ``OUT/plan.json``: every candidate shape with its predicted latency and size, which are
to be trained (the largest that meet the budget, and the nearest miss) and why each other one is not. It
prints the chosen ones. The probes stay in ``OUT/probes/`` (a second run reuses them). ``--dry-run`` stops
after the plan.

The plan also predicts each candidate's training time, from one timed training step of the teacher on
the task's rows (``deploy.plan.training_seconds``).

Then the search (``commands/compress_search.py``). Each planned candidate is distilled from the teacher
(multilevel, over its rows and a transfer set the teacher labels; the teacher's layers as the start when as
wide, pruning otherwise; ``commands/compress_stages.py``) with its best epoch kept on rows carved from the
training set (seeded),
exported to the backend, and scored on those held-out rows beside the teacher. All of them, the teacher and
the teacher's own export are then timed in one ``retort bench`` run with rounds (each model's time is the least
of its rounds' medians, as in the plan: noise on a shared machine only adds time). The shipped model is the
one with the fewest parameters that meets the measured latency and the quality floor (``--max-drop`` in the
metric's units, or ``--max-drop-percent``, on the held-out rows); it is copied to ``OUT/model`` and
described in ``OUT/README.md`` (a model card) and ``OUT/frontier.json`` (every candidate). A finished stage
is never trained again (a stopped search continues). No candidate meeting the budget ends with exit 3,
naming the closest, the frontier kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from statistics import median

from retort import options, outputs
from retort.commands.compress_probes import Probes, probe_shapes
from retort.commands.compress_search import BACKENDS, SearchStopped, search
from retort.commands.compress_stages import TRANSFER, mines_pairs, training_texts, transfer_times
from retort.commands.train import train
from retort.config import TrainConfig, from_dict
from retort.data.spec import choose_task
from retort.data.tasks import load_split, task_inputs
from retort.deploy.plan import Budget, CostModel, Shape, training_seconds, worth_timing
from retort.deploy.plan import make_plan as plan_candidates
from retort.errors import RetortError
from retort.machine import busy
from retort.models.check import resolve_model_path
from retort.models.vocab import vocabulary_size
from retort.paths import write_atomic
from retort.report.tables import table


def add_parser(sub) -> None:
    """The ``compress`` subcommand."""
    p = sub.add_parser("compress", help="the smallest student that meets a budget: planned, distilled, measured")
    options.add(p, "glue_dir", "skip_bad_rows", "compress_teacher", "compress_base", "teacher_epochs", "source_task",
                "data", "compress_out", "speedup", "speedup_backend", "latency_ms", "max_params", "headroom",
                "compress_max_drop", "max_drop_percent", "backend", "compress_epochs",
                "probe_samples", "compress_rounds", "shapes", "compress_corpus", "compress_sequences", "vocab", "hours",
                "threads", "plan_only",
                required=("compress_out",))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Plan (or take the plan a stopped search made with the same options), print it, stop with ``--dry-run``,
    else search."""
    if args.max_drop is not None and args.max_drop_percent is not None:
        raise RetortError("--max-drop and --max-drop-percent: give one (points of the metric, or a share)")
    if isinstance(args.max_drop, options.Percent):  # --max-drop 3% is --max-drop-percent 3
        args.max_drop, args.max_drop_percent = None, float(args.max_drop)
    if args.compress_corpus and not Path(args.compress_corpus).exists():
        raise RetortError(f"--corpus {args.compress_corpus}: no such file or folder")
    argv = remake_words(args)
    own_teacher = args.compress_teacher is None
    if own_teacher:
        args.compress_teacher = fine_tune_teacher(args)
    plan = _saved_plan(Path(args.out) / "plan.json", argv)
    if plan is not None:
        source = resolve_model_path(args.compress_teacher) if Path(args.compress_teacher).is_dir() else None
        choose_task(args.task, args.data, source, "--teacher")  # a task of the user's is registered again
        print(f"reusing {Path(args.out) / 'plan.json'} (made with the same options; remove it to plan again)")
    else:
        plan = make_plan(args.compress_teacher, args.out, task=args.task, data=args.data, glue_dir=args.glue_dir,
                         speedup=args.speedup, latency_ms=args.latency_ms, max_params=args.max_params,
                         speedup_backend=args.speedup_backend, headroom=args.headroom,
                         backend=args.backend, samples=args.probe_samples, threads=args.threads,
                         keep=args.shapes, argv=argv, epochs=args.compress_epochs,
                         sequences=args.compress_sequences if args.compress_corpus else None,
                         corpus=args.compress_corpus, vocab=args.vocab, own_teacher=own_teacher)  # fmt: skip
        print(f"wrote {Path(args.out) / 'plan.json'}")
    print_plan(plan)
    if args.dry_run:
        return 0
    if not plan["train"]:
        why = f" ({plan['unreachable']})" if plan.get("unreachable") else ""
        print(f"retort compress: no candidate is predicted to meet the budget{why}; the closest: "
              f"{', '.join(plan.get('closest', []))}", file=sys.stderr)  # fmt: skip
        return 3
    drop = (args.max_drop_percent / 100, True) if args.max_drop_percent is not None else (
        (args.max_drop, False) if args.max_drop is not None else None)  # fmt: skip
    try:
        frontier = search(plan, Path(args.out), data=args.data, glue_dir=args.glue_dir, max_drop=drop,
                          epochs=args.compress_epochs, rounds=args.rounds, threads=options.all_cores(args.threads),
                          samples=args.probe_samples, corpus=args.compress_corpus,
                          corpus_sequences=args.compress_sequences, hours=args.hours)  # fmt: skip
    except SearchStopped as stopped:
        print(f"retort compress: {stopped}", file=sys.stderr)
        return 3
    print_frontier(frontier)
    if frontier["shipped"] is None:
        print(f"retort compress: no candidate met the budget as measured; the closest: "
              f"{', '.join(frontier['closest'])} (frontier.json has them all)", file=sys.stderr)  # fmt: skip
        return 3
    print(f"wrote {Path(args.out) / 'model'} ({frontier['shipped']}), README.md, frontier.json")
    return 0


def fine_tune_teacher(args: argparse.Namespace) -> str:
    """No ``--teacher``: fine-tune ``--base`` on the task into ``OUT/teacher`` (``retort teacher``, its epoch kept
    on rows carved from the training set, the dev set scored once), once; a stopped one resumes."""
    task = choose_task(args.task, args.data)
    out = Path(args.out) / "teacher"
    outputs.check_output(Path(args.out), "--out", reads=task_inputs(task, args.glue_dir), folder=True)
    if not (out / "metrics.json").is_file():
        values = {"kind": "teacher", "task": task.name, "data": args.data, "base": args.compress_base,
                  "glue_dir": args.glue_dir, "epochs": args.teacher_epochs, "val_split": 0.1, "threads": args.threads,
                  "out": str(out)}  # fmt: skip
        cfg = from_dict(TrainConfig, values, "compress")
        print(f"[compress] no --teacher: fine-tuning {args.compress_base} on {task.name} into {out}", flush=True)
        train(cfg, resume=(out / "checkpoint" / "trainer_state.json").is_file(), progress=False)
    return str(out)


def _saved_plan(path: Path, argv: list[str]) -> dict | None:
    """The plan at ``path`` when it was made with the same options (a stopped search continues on it, so
    timing noise cannot change which shapes it trains); None otherwise."""
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(plan, dict) or "candidates" not in plan:
        return None
    return plan if _planned(plan.get("argv") or []) == _planned(argv) else None


def _planned(words: list[str]) -> list[str]:
    """The options that shape a plan: all but ``--hours`` (a search may go on with more time)."""
    i = words.index("--hours") if "--hours" in words else len(words)
    return words[:i] + words[i + 2 :]


def remake_words(args: argparse.Namespace) -> list[str]:
    """The options that make this search again, as words (the model card's last line)."""
    given = ["--teacher", args.compress_teacher] if args.compress_teacher else [
        "--base", args.compress_base, "--teacher-epochs", str(args.teacher_epochs)]  # fmt: skip
    words = [*given, "--out", args.out, "--backend", args.backend, "--epochs", str(args.compress_epochs)]
    for flag, value in (("--task", args.task), ("--data", args.data), ("--glue-dir", args.glue_dir),
                        ("--speedup", args.speedup), ("--speedup-backend", args.speedup_backend),
                        ("--latency-ms", args.latency_ms), ("--max-params", args.max_params),
                        ("--headroom", args.headroom or None), ("--max-drop", args.max_drop),
                        ("--max-drop-percent", args.max_drop_percent), ("--shapes", args.shapes),
                        ("--corpus", args.compress_corpus),
                        ("--corpus-sequences", args.compress_corpus and args.compress_sequences),
                        ("--vocab", None if args.vocab == "auto" else args.vocab),
                        ("--hours", args.hours)):  # fmt: skip
        if value is not None:
            words += [flag, str(value)]
    return words


def quiet_machine(threads: int) -> str | None:
    """Wait (up to ``$RETORT_QUIET_WAIT_S`` s, default 300) for other processes to leave the cores before
    anything is timed: None when they did, else the warning (printed, kept in plan.json). A plan timed beside a
    training once took the teacher at 2.5x its quiet time and planned for a budget no student meets."""
    wait, load = float(os.environ.get("RETORT_QUIET_WAIT_S", 300)), busy(threads)
    if load and wait:
        print(f"waiting up to {wait:.0f} s for a quiet machine: {load}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + wait
    while load and time.monotonic() < deadline:
        time.sleep(min(15.0, max(0.0, deadline - time.monotonic())))
        load = busy(threads, seconds=2.0)
    if load:
        print(f"warning: {load}", file=sys.stderr, flush=True)
    return load


SHORTLIST_ROUNDS = 4  # plan, time the shapes that decide it, plan again: at most this many plans


def make_plan(
    teacher: str, out: str, *, task: str | None = None, data: str | None = None, glue_dir: str | None = None,
    speedup: float | None = None, latency_ms: float | None = None, max_params: int | None = None,
    backend: str = "onnx-int8", samples: int = 64, threads: int | None = None, keep: int = 3,
    argv: list[str] | None = None, epochs: int = 3, sequences: int | None = None, val_split: float = 0.1,
    vocab: str = "auto", seed: int = 42, own_teacher: bool = False, speedup_backend: float | None = None,
    headroom: float | None = None, corpus: str | None = None,
) -> dict:  # fmt: skip
    """Time the teacher and the probes, fit the cost model, plan, and write ``OUT/plan.json``; returns the plan
    (``deploy.plan.make_plan``'s, with the timings it was made from under ``points``)."""
    if task and data:
        raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
    if backend not in BACKENDS:
        raise RetortError(f"--backend {backend}: choose from {', '.join(BACKENDS)}")
    budget = Budget(speedup, latency_ms, max_params, speedup_backend)  # given, and each part positive
    source = resolve_model_path(teacher) if Path(teacher).is_dir() else teacher
    chosen = choose_task(task, data, source, "--teacher")
    out_dir = Path(out)
    reads = [None if own_teacher else outputs.local(teacher, "the teacher"), *task_inputs(chosen, glue_dir)]
    outputs.check_output(out_dir, "--out", reads=reads, folder=True)
    threads = options.all_cores(threads)
    load = quiet_machine(threads)
    probes = Probes(source, chosen, out_dir, glue_dir, backend, threads, samples)
    teacher_torch = probes.time(source)  # as the user has it: PyTorch fp32
    shape = probes.teacher_shape
    points = [(shape, teacher_torch["tokens"], probes.time_in_backend("teacher", source)["ms"])]
    for probe in probe_shapes(shape, probes.head_size):
        points.append((probe, teacher_torch["tokens"], probes.time_in_backend(probe.name, probes.build(probe))["ms"]))
    config = probes.teacher_config
    words = vocabulary(source, vocab, budget, chosen, glue_dir, val_split, seed)
    timed: dict[str, float] = {}
    runs: list[dict] = []  # the shortlists' bench runs: each shape beside the teacher and its export
    teacher_ms = {"torch": teacher_torch["ms"], "backend": points[0][2]}
    first, by_name, pairs = list(points), {}, {}
    for rounds_left in range(SHORTLIST_ROUNDS, -1, -1):  # the cost model shortlists; the deciding shapes are timed
        cost = CostModel.fit(points)
        plan = plan_candidates(shape, teacher_ms["torch"], cost, budget, teacher_torch["tokens"], probes.head_size,
                               config.vocab_size, config.max_position_embeddings, chosen.num_labels, keep,
                               words.get("kept"), teacher_ms["backend"], timed, (headroom or 0) / 100)  # fmt: skip
        reachable = rounds_left and "unreachable" not in plan
        todo = worth_timing(plan, min_layers=max(2, shape.layers // 2)) if reachable else []
        if not todo:
            break
        shapes = [
            Shape(c["layers"], c["hidden"], c["heads"], c["ffn"]) for c in plan["candidates"] if c["name"] in todo
        ]
        by_name.update((s.name, s) for s in shapes)
        runs.append(probes.shortlist(shapes, source, len(runs)))
        teacher_ms, pairs = typical_times(teacher_torch["ms"], first[0][2], runs)
        timed = {n: p["ms"] for n, p in pairs.items()}
        scale = teacher_ms["backend"] / first[0][2]  # the first timings as ratios to the teacher's, at its typical time
        points = [(s, n, ms * scale) for s, n, ms in first] + [(by_name[n], first[0][1], ms) for n, ms in timed.items()]
    rate = probes.train_rate()
    rows = int(len(load_split(chosen, "train", glue_dir)) * (1 - val_split))
    mined = mines_pairs(chosen, corpus)  # pairs mined from the corpus join the transfer set (no general stage)
    times = 1 + transfer_times("task")  # the rows and their transfer set
    for c in plan["candidates"]:
        if c["chosen"]:
            pruned = c["start"] != "teacher layers" and not mined
            c["train_s"] = training_seconds(Shape(c["layers"], c["hidden"], c["heads"], c["ffn"]), shape, rate,
                                            tokens=teacher_torch["tokens"], rows=rows * times, epochs=epochs,
                                            cached=False, sequences=sequences if pruned else None)  # fmt: skip
    plan.update({
        "mined_pairs": mined,
        "train_rate_s_per_mmac": rate, "train_rows": rows, "epochs": epochs, "corpus_sequences": sequences,
        "task": chosen.name, "backend": backend, "threads": threads, "teacher_folder": str(source),
        "teacher_torch_ms": teacher_ms["torch"], "teacher_torch_repeats": teacher_torch["repeats"],
        "teacher_backend_ms": teacher_ms["backend"],
        "teacher_timings": teacher_timings(teacher_torch["ms"], first[0][2], runs),
        "points": [{"shape": s.name, "tokens": n, "measured_ms": ms, "predicted_ms": cost.predict(s, n),
                    **({k: v for k, v in pairs[s.name].items() if k != "ms"} if s.name in pairs else
                       {"own_ms": first[i][2]} if i < len(first) else {})}
                   for i, (s, n, ms) in enumerate(points)],  # own_ms: as timed, before the scaling
        "cpu": probes.cpu, "argv": argv or [], "busy": load, "vocabulary": words, "probe_samples": samples,
    })  # fmt: skip
    write_atomic(out_dir / "plan.json", json.dumps(plan, indent=2))
    return plan


def teacher_timings(torch_ms: float, backend_ms: float, runs: list[dict]) -> dict[str, list[float]]:
    """Every timing of the teacher in the plan, per backend: the first (``torch_ms``, ``backend_ms``), then one
    per shortlist bench run, in order (``plan.json``'s ``teacher_timings``; ``typical_times`` takes medians)."""
    return {"torch": [torch_ms, *(r["teacher_torch_ms"] for r in runs)],
            "backend": [backend_ms, *(r["teacher_backend_ms"] for r in runs)]}  # fmt: skip


def typical_times(torch_ms: float, backend_ms: float, runs: list[dict]) -> tuple[dict, dict]:
    """The teachers' typical times and each shortlisted shape's, from the plan's first timings and the
    shortlists' bench ``runs``: a teacher's median over them (within one run the least of its rounds counts, noise
    only adds time; between runs minutes apart this machine's speed itself drifts, and the verdict's bench
    comes at some later minute), and a shape as its ratio to the teacher's export in its own run times that
    median. A plan that read shapes against the teacher's first timing alone predicted TREC's students 51-69%
    slow: that timing was 1.63 ms, the export beside the shapes 0.96-1.06 ms, the verdict's bench 1.09 ms
    (docs/results.md, #30 session 2026-12-06 night, which says how this rule was chosen).
    Returns ``({"torch": ms, "backend": ms}, name -> {"ms", "own_ms", "teacher_beside_ms"})``."""
    typical = {k: median(v) for k, v in teacher_timings(torch_ms, backend_ms, runs).items()}
    shapes = {n: {"ms": own * typical["backend"] / r["teacher_backend_ms"], "own_ms": own,
                  "teacher_beside_ms": r["teacher_backend_ms"]}
              for r in runs for n, own in r["shapes"].items()}  # fmt: skip
    return typical, shapes


def vocabulary(teacher: str, mode: str, budget: Budget, task, glue_dir, val_split: float, seed: int) -> dict:
    """``--vocab``: ``{"mode": "full"}``, or with ``task`` (``auto`` with ``--max-params``) the vocabulary the
    students keep (``models/vocab.py``: the training rows' tokens and every character). ``auto`` keeps the
    full one when the tokenizer is not WordPiece, saying so; ``task`` then is one line, exit 2."""
    if mode == "full" or (mode == "auto" and budget.max_params is None):
        return {"mode": "full"}
    try:
        counts = vocabulary_size(teacher, training_texts(task, glue_dir, val_split, seed))
    except RetortError as e:
        if mode == "task":
            raise RetortError(f"--vocab task: {e}") from None
        print(f"note: the students keep the teacher's vocabulary ({e})")
        return {"mode": "full"}
    return {"mode": "task", **counts}


def print_plan(plan: dict) -> None:
    """The plan in words: the teacher's timings, the cost model's fit, and the candidates to train."""
    t = plan["teacher"]
    timings = plan.get("teacher_timings") or {}
    repeats = plan.get("teacher_torch_repeats") or []
    least = (f" (the median of {', '.join(f'{x:.2f}' for x in timings['torch'])}: the least of its first timings, "
             "then one a shortlist bench run)" if len(timings.get("torch", [])) > 1 else
             f" (least of {', '.join(f'{x:.2f}' for x in repeats)})" if len(repeats) > 1 else "")  # fmt: skip
    print(f"teacher {t['name']} ({t['parameters']:,} parameters): {plan['teacher_torch_ms']:.2f} ms a call{least} in "
          f"PyTorch fp32, {plan['teacher_backend_ms']:.2f} ms in {plan['backend']} (batch 1, {plan['tokens']:.1f} "
          f"tokens on average, {plan['threads']} threads, {plan['cpu']})")  # fmt: skip
    target, planned = plan["target_ms"], plan.get("plan_target_ms")
    room = f", planned for {planned:.2f} ms (--headroom)" if target and planned and planned < target else ""
    print(f"budget {plan['budget']}: " + (f"at most {target:.2f} ms a call{room}" if target else "size only"))
    rows = [[p["shape"], f"{p['measured_ms']:.3f}", f"{p['predicted_ms']:.3f}"] for p in plan["points"]]
    print(table(["timed shape", "measured ms", "cost model ms"], rows))
    chosen = [c for c in plan["candidates"] if c["chosen"]]
    rows = [[c["name"], c["start"] + (" + general" if "general" in c.get("train_s", {}) else "") + " + transfer set",
             f"{c['parameters']:,}", f"{c['predicted_ms']:.3f}" + (" (timed)" if c["latency_from"] == "timed probe"
                                                                 else ""), _minutes(c.get("train_s")), c["role"]]
            for c in chosen]  # fmt: skip
    print(table(["to train", "start", "parameters", "predicted ms", "predicted training", "why"], rows)
          if rows else "nothing to train")  # fmt: skip
    total = sum(sum(c.get("train_s", {}).values()) for c in chosen)
    if total:
        print(f"predicted training time in all: {_minutes({'all': total})} (from one timed training step of the "
              "teacher; small students take longer than their arithmetic says)")  # fmt: skip
    words = plan.get("vocabulary") or {}
    if words.get("mode") == "task":
        print(f"vocabulary: the students keep {words['kept']:,} of the teacher's {words['of']:,} tokens (the "
              f"{words['used']:,} the training rows use, every character, the special tokens); a word outside "
              "them splits into smaller pieces (the held-out rows measure what that costs)")  # fmt: skip
    first, lift = TRANSFER["task"], TRANSFER["lift"]
    pairs = f"{first['copies']}x word-edited copies and {first['mined']}x pairs mined from the corpus" if plan.get(
        "mined_pairs") else f"{first['copies'] + first['mined']}x word-edited copies"  # fmt: skip
    print(f"each task stage trains {plan['epochs']} epochs over its rows and a transfer set the teacher labels "
          f"({pairs}, the rows' number times)")  # fmt: skip
    if any(a in plan.get("argv", []) for a in ("--max-drop", "--max-drop-percent")):
        print(f"a candidate whose task stage misses the quality floor on the held-out rows then takes up to "
              f"{len(lift['lr'])} more rounds while below it ({lift['epochs']} epochs each, at "
              f"{' then '.join(f'{x:g}x' for x in lift['lr'])} the rate, more copies"
              f"{', the pairs and fresh ones' if plan.get('mined_pairs') else ''}), the best on those rows kept; "
              "with --hours time left after every candidate, the one that would ship takes them too while each "
              "improves; their time is not in the prediction above")  # fmt: skip
    left = len(plan["candidates"]) - len(chosen)
    print(f"{left} other candidates left out (plan.json says why, each)")
    if not plan["met"]:
        print(f"no candidate is predicted to meet the budget; the closest: {', '.join(plan['closest'])}")


def _minutes(stages: dict | None) -> str:
    """Predicted stage seconds as minutes, stage by stage."""
    if not stages:
        return ""
    return " + ".join(f"{v / 60:.0f} min" + ("" if k in ("task", "all") else f" {k}") for k, v in stages.items())


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
    for name, why in (frontier.get("not_trained") or {}).items():
        print(f"{name}: {why}")
    drift = frontier.get("cost_model_errors_drift_corrected") or {}
    print("planner error (predicted ms against measured): " + ", ".join(
        f"{n} {e:+.0%} ({drift[n]:+.0%} with the teacher export's drift since the plan taken out)"
        for n, e in frontier["cost_model_errors"].items() if n in drift))  # fmt: skip
