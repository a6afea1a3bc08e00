"""``retort demo``, the main job (``make demo``): on STS-B, fine-tune the teacher (reused when already
trained with the same config), distill a 3x384 student, evaluate both from their saved folders, benchmark
both (each in its own process, so peak memory is its own), and print one table. Writes OUT/demo.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from retort import options
from retort.config import ObjectiveConfig, TrainConfig, from_dict, to_dict
from retort.data.glue import resolve_glue_dir, split_file
from retort.data.tasks import get_task
from retort.distill.presets import resolve
from retort.errors import RetortError
from retort.paths import check_writable, write_atomic
from retort.report.figures import plot_run
from retort.report.tables import table
from retort.training.outdir import guarded, locked

TASK = "STS-B"
HEADERS = ["model", "params", "dev Pearson", "dev Spearman", "ms/sample b1", "ms/sample b32", "speed-up b1",
           "peak RSS MiB", "train min"]  # fmt: skip


def add_parser(sub) -> None:
    """The ``demo`` subcommand."""
    p = sub.add_parser("demo", help="the main job: teacher, 3x384 student, eval and bench on STS-B, one table")
    options.add(p, "glue_dir", "skip_bad_rows", "demo_out", "threads", "teacher_epochs", "student_epochs",
                "schedule_epochs", "cache_teacher", "student", "method", "max_train_samples", "max_eval_samples",
                "base", "bench_samples")  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check everything that can be checked before the first step, then run the demo."""
    check_first(args)
    return run_demo(args)


def check_first(args: argparse.Namespace) -> None:
    """Everything the demo's later steps would refuse, refused before the teacher trains for minutes: the
    schedule, both run configs (the student's shape and method included), the method's weights, the
    output folder and the STS-B files."""
    if args.schedule_epochs < max(args.teacher_epochs, args.student_epochs):
        raise RetortError(
            f"--schedule-epochs {args.schedule_epochs}: must be at least the teacher's and student's epochs"
        )
    _, student_cfg = configs(args, options.all_cores(args.threads))  # each config checks itself
    resolve(student_cfg.objective)
    check_writable(Path(args.out))
    root = resolve_glue_dir(args.glue_dir)
    if root is not None:
        for split in ("train", "dev"):
            split_file(get_task(TASK), root, split)


def _saved_config(path: Path) -> dict | None:
    """A run folder's config, read through TrainConfig so that fields added to retort since the run
    was made take their defaults (and an older run is still recognised as the same run)."""
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text())
    try:
        return to_dict(from_dict(TrainConfig, data))
    except RetortError:  # a field that retort no longer has: not the same run
        return None


def _train_or_reuse(cfg: TrainConfig, label: str) -> dict:
    """Reuse a finished run of the same config, resume a stopped one, or train; returns its metrics."""
    from retort.training.assembly import prepare, resolved_config  # noqa: PLC0415  (torch)
    from retort.training.loop import fit  # noqa: PLC0415  (torch)

    out = Path(cfg.out)
    saved = out / "config.yaml"
    wanted = to_dict(resolved_config(cfg))
    have = _saved_config(saved)
    if cfg.kind == "teacher" and have:  # a teacher's fine-tuning does not read the distillation objective
        have.pop("objective", None)
        wanted.pop("objective", None)
    same = have == wanted
    if same and (out / "metrics.json").exists() and (out / "model" / "config.json").exists():
        print(f"[demo] {label}: reusing {out}/model (same config, finished)", flush=True)
        return json.loads((out / "metrics.json").read_text())
    resume = same and (out / "checkpoint" / "trainer_state.json").exists()
    print(f"[demo] {label}: {'resuming' if resume else 'training'} in {out}", flush=True)
    with locked(out), guarded(out):  # one writer; a failed run leaves the folder as it found it
        run = prepare(cfg)
        metrics = fit(run, resume=resume, progress=True)  # a bar on a terminal, a line every 30 s in a log
    plot_run(out)
    return metrics


def configs(args: argparse.Namespace, threads: int) -> tuple[TrainConfig, TrainConfig]:
    """The teacher's and the student's run configs, from the demo's options."""
    out = Path(args.out)
    common = dict(
        task=TASK,
        glue_dir=args.glue_dir,
        threads=threads,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        skip_bad_rows=bool(args.skip_bad_rows),
    )
    teacher_cfg = TrainConfig(
        kind="teacher",
        out=str(out / "teacher"),
        epochs=args.teacher_epochs,
        schedule_epochs=args.schedule_epochs,
        **({"base": args.base} if args.base else {}),
        **common,
    )
    student_cfg = TrainConfig(
        kind="distill",
        out=str(out / f"student-{args.student}"),
        student=args.student,
        teacher=str(out / "teacher" / "model"),
        epochs=args.student_epochs,
        schedule_epochs=args.schedule_epochs,
        cache_teacher=args.cache_teacher,
        objective=ObjectiveConfig(method=args.method),
        **common,
    )
    return teacher_cfg, student_cfg


def measure(name: str, cfg: TrainConfig, metrics: dict, args: argparse.Namespace, threads: int) -> dict:
    """Evaluate a trained model from its saved folder and benchmark it in a process of its own."""
    from retort.deploy.bench import bench_in_subprocess  # noqa: PLC0415  (numpy, onnxruntime)
    from retort.evaluation.folder import evaluate_folder  # noqa: PLC0415  (numpy, onnxruntime)

    model_dir = Path(cfg.out) / "model"
    print(f"[demo] evaluating and benchmarking {name}", flush=True)
    ev = evaluate_folder(str(model_dir), TASK, "dev", args.glue_dir, max_samples=args.max_eval_samples, threads=threads)
    bench = bench_in_subprocess(model_dir, TASK, args.glue_dir, threads, args.bench_samples)
    return {
        "dir": str(model_dir),
        "eval": ev,
        "bench": bench,
        "train_wall_seconds": metrics["wall_seconds"],
        "train_samples_per_s": metrics["train_samples_per_s"],
    }


def table_rows(models: dict) -> list[list]:
    """One row of the table per model; sets each model's ``speedup_batch1`` against the teacher's."""
    rows = []
    base_ms = models["teacher"]["bench"]["latency"][0]["ms_per_sample_p50"]
    for name, m in models.items():
        lat = {r["batch_size"]: r for r in m["bench"]["latency"]}
        dev = m["eval"]["results"]["dev"]
        b1 = lat[1]["ms_per_sample_p50"]
        m["speedup_batch1"] = base_ms / b1
        rows.append(
            [
                name,
                f"{m['bench']['parameters'] / 1e6:.1f}M",
                dev["pearson"],
                dev["spearman"],
                f"{b1:.2f}",
                f"{lat[32]['ms_per_sample_p50']:.2f}" if 32 in lat else "-",
                f"{m['speedup_batch1']:.2f}x",
                f"{m['bench']['peak_rss_mb']:.0f}",
                f"{m['train_wall_seconds'] / 60:.1f}",
            ]
        )
    return rows


def run_demo(args: argparse.Namespace) -> int:
    """Train (or reuse) teacher and student, measure both, print the table and write OUT/demo.json."""
    t0 = time.perf_counter()
    out = Path(args.out)
    threads = options.all_cores(args.threads)
    teacher_cfg, student_cfg = configs(args, threads)
    teacher_metrics = _train_or_reuse(teacher_cfg, "teacher")
    student_metrics = _train_or_reuse(student_cfg, f"student {args.student}")
    record = {"task": TASK, "models": {}}
    for name, cfg, metrics in (
        ("teacher", teacher_cfg, teacher_metrics),
        (f"student {args.student}", student_cfg, student_metrics),
    ):
        record["models"][name] = measure(name, cfg, metrics, args, threads)
    rows = table_rows(record["models"])
    record["method"] = args.method
    record["table"] = {"headers": HEADERS, "rows": rows}
    record["seconds"] = time.perf_counter() - t0
    record["environment"] = record["models"]["teacher"]["bench"]["environment"]
    write_atomic(out / "demo.json", json.dumps(record, indent=2))
    print()
    print(
        f"retort demo: {TASK} dev, student distilled with '{args.method}', {threads} threads, "
        f"{record['environment']['cpu']}"
    )
    print(table(HEADERS, rows))
    print(f"total {record['seconds'] / 60:.1f} min; wrote {out / 'demo.json'}")
    return 0
