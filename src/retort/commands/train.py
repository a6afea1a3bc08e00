"""``retort teacher`` and ``retort distill``: train a run folder. The config is resolved from the command
line (defaults, then ``--config`` YAML, then flags, then ``--set``; ``--resume`` reads OUT/config.yaml),
then ``train`` does the rest, for the command line and the Python API alike: the resume checks, the run
folder's guard (a failed run leaves the folder as it found it), assembly, the loop, the plots. The command
prints the best dev scores and the speed at the end.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from retort import options
from retort.config import TrainConfig, apply_overrides, check_resume, from_dict, load_yaml, to_dict
from retort.errors import RetortError
from retort.paths import check_writable
from retort.report.figures import plot_run
from retort.training import outdir

# Which config flags each training command has (the ``cli`` tag of each field in retort/config.py)
FLAG_GROUPS = {"teacher": {"train", "teacher"}, "distill": {"train", "student"}, "dse": {"train", "student", "dse"}}


def add_parser(sub) -> None:
    """The ``teacher`` and ``distill`` subcommands."""
    p = sub.add_parser("teacher", help="fine-tune a cross-encoder teacher on a GLUE task")
    add_training_options(p, "teacher")
    p = sub.add_parser("distill", help="distill a fine-tuned teacher into a smaller student")
    add_training_options(p, "distill")


def add_training_options(p: argparse.ArgumentParser, command: str) -> None:
    """The options every training command has, then the config fields tagged for ``command``
    (``teacher``, ``distill`` or ``dse``) as flags; the parser runs ``run``."""
    options.add(p, "config", "set", "resume", "overwrite", "no_progress")
    options.add_config_flags(p, FLAG_GROUPS[command])
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config from the command line, train, print the best dev scores and the speed."""
    kind = "distill" if args.command == "dse" else args.command
    cfg = train_config_from_args(args, kind)
    metrics = train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if not metrics:  # a process other than rank 0 of a multi-process run: rank 0 reports
        return 0
    from retort.report.tables import print_metrics  # noqa: PLC0415  (numpy)

    print_metrics(metrics["task"], metrics["best"], title=f"best dev ({cfg.out}/model, step {metrics['best_step']})")
    print(
        f"training: {metrics['train_seconds']:.0f}s in steps, {metrics['wall_seconds']:.0f}s wall, "
        f"{metrics['train_samples_per_s']:.1f} samples/s"
    )
    return 0


def train_config_from_args(args: argparse.Namespace, kind: str) -> TrainConfig:
    """Defaults, then --config YAML, then flags, then --set overrides; resume reads OUT/config.yaml and
    refuses a change that would change the run."""
    data = to_dict(TrainConfig())  # the defaults; the kind is set below, with the fields it needs
    saved = None
    if args.resume and args.out and (Path(args.out) / "config.yaml").exists():
        saved = load_yaml(Path(args.out) / "config.yaml")
        data = copy.deepcopy(saved)
    elif args.config:
        data.update(load_yaml(args.config))
    obj = dict(data.get("objective") or {})
    command = "dse" if args.command == "dse" else kind
    for cls, f in options.config_fields(FLAG_GROUPS[command]):
        value = getattr(args, f.name, None)
        if value is not None:
            (obj if cls.__name__ == "ObjectiveConfig" else data)[f.name] = value
    if getattr(args, "c", None) is not None:  # DSE: (1 - c) * task loss + c * MSE to the teacher's logits
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
    check_writable(out)
    names = [n for n in outdir.RUN_FILES if n != outdir.FAILED_LOG] + ["model.tmp"]
    held = [n for n in names if (out / n).exists()] if out.is_dir() else []
    if held and not resume and not overwrite:
        raise RetortError(
            f"--out {out}: holds a run already ({', '.join(held)}); --resume continues it, --overwrite replaces it"
        )


def check_resumable(out: Path, resume: bool, overwrite: bool) -> None:
    """--resume and --overwrite exclude each other, and --resume needs the checkpoint of an unfinished run."""
    if resume and overwrite:
        raise RetortError("--resume and --overwrite: choose one (continue the run, or replace it)")
    if resume and not (out / "checkpoint" / "trainer_state.json").exists():
        if (out / "metrics.json").exists():
            raise RetortError(
                f"{out}: the run finished (metrics.json); a finished run's checkpoint is removed unless it "
                "was trained with --keep-checkpoint, so there is nothing to resume"
            )
        raise RetortError(f"{out}/checkpoint: no checkpoint to resume from")


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Train the run ``cfg`` describes into ``cfg.out`` as ``retort teacher``/``distill`` do: recover a save
    stopped half-way, check the resumption and the folder, run under the folder's guard, draw the plots.
    Returns ``metrics.json``'s contents ({} on a process other than rank 0 of a multi-process run)."""
    from retort.training.distributed import is_main  # noqa: PLC0415  (torch)

    out = Path(cfg.out)
    main = is_main()  # under torchrun / accelerate launch, rank 0 checks and guards the run folder
    if resume and main:
        _recover_saves(out)
    check_resumable(out, resume, overwrite)
    if main:
        check_out(out, resume, overwrite)
    if resume:
        from retort.training.checkpoint import check_checkpoint  # noqa: PLC0415  (torch)

        check_checkpoint(out / "checkpoint")  # before data and models load
    if not main:
        return _prepare_and_fit(cfg, resume, progress)
    return _guarded_run(cfg, resume, overwrite, progress)


def _recover_saves(out: Path) -> None:
    """A save stopped between its two renames: use the complete copy before it."""
    from retort.models.hf import recover_dir  # noqa: PLC0415  (transformers)

    for name in ("checkpoint", "model"):
        if recover_dir(out / name):
            print(f"{out}/{name}: the last save was interrupted; using the complete copy before it")


def _guarded_run(cfg: TrainConfig, resume: bool, overwrite: bool, progress: bool) -> dict:
    """Train under the run folder's guard: a failed run leaves the folder it found, plus its log; with
    --overwrite the replaced run comes back if this one fails."""

    def kept(log: Path | None) -> None:
        where = f"; its log is {log}" if log else ""
        print(f"{cfg.out}: the failed run was removed and the folder is as it was before{where}", flush=True)

    with outdir.guarded(cfg.out, on_restore=kept):
        if overwrite and not resume:
            outdir.clear(Path(cfg.out))
        return _prepare_and_fit(cfg, resume, progress)


def _prepare_and_fit(cfg: TrainConfig, resume: bool, progress: bool) -> dict:
    """Assemble the run, say what it trains (rank 0), run the loop and draw its plots (the command plots,
    the loop does not)."""
    from retort.training.assembly import prepare  # noqa: PLC0415  (torch)
    from retort.training.distributed import is_main  # noqa: PLC0415  (torch)
    from retort.training.loop import fit  # noqa: PLC0415  (torch)

    setup = prepare(cfg)
    if is_main():  # one report, not one per process
        _print_setup(setup, cfg.kind)
    metrics = fit(setup, resume=resume, progress=progress)
    if metrics:  # {} on a process other than rank 0: rank 0 reports
        plot_run(cfg.out)
    return metrics


def _print_setup(setup, kind: str) -> None:
    """One line on the data, the size and the objective; for a student copied from its teacher, what
    was copied."""
    from retort.training.distributed import world  # noqa: PLC0415  (torch)

    n_transfer = setup.info["transfer_examples"]
    processes = world()[1]
    print(
        f"{kind} {setup.task.name}: {setup.info['train_examples']} training examples"
        + (f" ({n_transfer} from transfer sets, unlabelled)" if n_transfer else "")
        + f", {setup.info['parameters'] / 1e6:.1f}M parameters, objective {setup.objective.formula()}"
        + (f", {processes} processes" if processes > 1 else ""),
        flush=True,
    )
    copied = setup.info.get("copied_from_teacher")
    if copied:
        zeros, left = copied.get("zero_filled") or [], copied.get("teacher_tensors_left_out") or []
        print(
            f"student initialised from the teacher: {copied['copied']} tensors copied, {copied['own']} its own"
            + (f", {len(zeros)} zero-filled (the teacher has none: {', '.join(zeros)})" if zeros else "")
            + (f", {len(left)} teacher tensors with no place in it (first: {left[0]})" if left else "")
        )
