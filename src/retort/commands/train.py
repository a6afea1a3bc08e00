"""``retort teacher`` and ``retort distill``: train a run folder. The config is resolved from the command
line (defaults, then ``--config`` YAML, then flags, then ``--set``; ``--resume`` reads OUT/config.yaml),
then ``train`` does the rest, for the command line and the Python API alike: the output rule for the run
folder (``retort.outputs``: never an input, a model or inside another run), its lock (one writer per run
folder, ``training.outdir.locked``), the resume checks, the folder's guard (a failed run leaves the folder
as it found it), assembly, the loop, the plots. The command
prints the kept epoch's scores (on the rows it was chosen on) and the speed at the end.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path

from retort import options, outputs
from retort.config import TrainConfig, apply_overrides, from_dict, load_yaml, to_dict
from retort.data.glue import resolve_glue_dir
from retort.data.spec import folder_task, load_task
from retort.data.tasks import get_task, task_inputs
from retort.errors import ConfigError, RetortError
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
    """Resolve the config from the command line, train, print the kept epoch's scores and the speed."""
    kind = "distill" if args.command == "dse" else args.command
    cfg = train_config_from_args(args, kind)
    metrics = train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if not metrics:  # a process other than rank 0 of a multi-process run: rank 0 reports
        return 0
    from retort.report.tables import print_metrics  # noqa: PLC0415  (numpy)

    chosen_on = "held-out rows carved from train" if cfg.val_split else "dev (dev-selected)"
    print_metrics(metrics["task"], metrics["best"], title=f"best epoch, chosen on {chosen_on} ({cfg.out}/model, "
                  f"step {metrics['best_step']})", baseline=metrics.get("baseline"))  # fmt: skip
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
    elif data.get("general") and "method" not in obj and not args.resume:  # kd has no intermediate term
        obj["method"] = "multilevel"
    data["objective"] = obj
    data["kind"] = kind
    data = apply_overrides(data, args.set)
    explicit = getattr(args, "task", None) is not None or any(k.split("=")[0].strip() == "task" for k in args.set or [])
    given = explicit or saved is not None or "task" in (load_yaml(args.config) if args.config else {})
    cfg = settle_task(from_dict(TrainConfig, data), explicit and saved is None, given)
    if not args.out and not args.resume:
        raise RetortError("--out DIR is required")
    if saved is not None:
        check_resume(from_dict(TrainConfig, saved, f"{args.out}/config.yaml"), cfg)
    return cfg


def settle_task(cfg: TrainConfig, explicit: bool, given: bool) -> TrainConfig:
    """``--data`` resolves a task of the user's (``data/spec.py``) and names it in ``task``; a student given
    neither ``--task`` nor ``--data`` (``given``: in any way) takes the task its teacher was trained for; a task
    of the user's as ``data`` naming the teacher's folder, which keeps the resolved spec, so the run's
    config.yaml is re-run by itself in a fresh process."""
    if cfg.data:
        if explicit:
            raise ConfigError("--task and --data: give one (a GLUE task, or your own data)")
        return dataclasses.replace(cfg, task=load_task(cfg.data).name)
    if cfg.kind == "distill" and not given and cfg.teacher and not cfg.general:
        own = folder_task(cfg.teacher)
        if own is not None:
            return dataclasses.replace(cfg, task=own.name, data=None if own.is_glue else cfg.teacher)
    return cfg


# what may differ between a run and its resumption: how fast it goes and where it reads the data from
RESUME_NEUTRAL = {"threads", "tag", "log_every", "save_every", "keep_checkpoint", "eval_batch_size", "device",
                  "glue_dir", "out"}  # fmt: skip


def check_resume(saved, requested) -> None:
    """Refuse a resumption whose arguments would change the run (task, data, model, schedule, objective)."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    before, after = flat(to_dict(saved)), flat(to_dict(requested))
    changed = [k for k in sorted(before) if before[k] != after.get(k) and k not in RESUME_NEUTRAL]
    if changed:
        what = ", ".join(f"{k} {before[k]!r} -> {after.get(k)!r}" for k in changed)
        raise ConfigError(f"--resume: {what} would change the run saved in {requested.out}; use a new --out")


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Under the run folder's lock, before any data or model is loaded: OUT must not hold another run
    unless --resume (continue it) or --overwrite (replace it)."""
    names = [n for n in outdir.RUN_FILES if n != outdir.FAILED_LOG] + ["model.tmp"]
    held = [n for n in names if (out / n).exists()] if out.is_dir() else []
    if held and not resume and not overwrite:
        raise RetortError(
            f"--out {out}: holds a run already ({', '.join(held)}); --resume continues it, --overwrite replaces it"
        )


def check_run_target(cfg: TrainConfig) -> None:
    """The output rule (``retort.outputs``) for the run folder, before it is locked: not anything the run
    reads (its data, base model, teacher, student init, corpus, transfer files) nor a folder holding one,
    not inside a model or another run, not a model folder itself, and somewhere a folder can be made."""
    try:
        data = task_inputs(get_task(cfg.task), cfg.glue_dir)
    except RetortError:
        data = [outputs.data_folder(resolve_glue_dir(cfg.glue_dir), cfg.task)]  # the assembly says what is wrong
    transfers = [spec.rsplit(":", 1)[0] if spec.rsplit(":", 1)[-1].isdigit() else spec for spec in cfg.transfer]
    reads = [
        *data,
        outputs.local(cfg.base if cfg.kind == "teacher" else None, "the base model"),
        outputs.local(cfg.teacher if cfg.kind == "distill" else None, "the teacher"),
        outputs.local(cfg.student_init if cfg.kind == "distill" else None, "the student's initial weights"),
        outputs.local(cfg.corpus, "the corpus"),
        *(outputs.local(t, "a transfer set") for t in transfers),
    ]
    outputs.check_output(cfg.out, "--out", reads=reads, folder=True, makes="run")


def check_resumable(out: Path, resume: bool) -> None:
    """--resume needs the checkpoint of an unfinished run."""
    if resume and not (out / "checkpoint" / "trainer_state.json").exists():
        if (out / "metrics.json").exists():
            raise RetortError(
                f"{out}: the run finished (metrics.json); a finished run's checkpoint is removed unless it "
                "was trained with --keep-checkpoint, so there is nothing to resume"
            )
        raise RetortError(f"{out}/checkpoint: no checkpoint to resume from")


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Train the run ``cfg`` describes into ``cfg.out`` as ``retort teacher``/``distill`` do: check the
    folder by the output rule, lock it (one writer per run folder), recover a save stopped half-way, check
    the resumption, run under the folder's guard, draw the plots. Returns ``metrics.json``'s contents ({} on
    a process other than rank 0 of a multi-process run, which neither checks, locks nor guards the folder)."""
    from retort.training.distributed import is_main  # noqa: PLC0415  (torch)

    out = Path(cfg.out)
    if resume and overwrite:
        raise RetortError("--resume and --overwrite: choose one (continue the run, or replace it)")
    if not is_main():
        check_resumable(out, resume)
        _check_checkpoint(out, resume)
        return _prepare_and_fit(cfg, resume, progress)
    check_run_target(cfg)
    with outdir.locked(out):
        if resume:
            _recover_saves(out)
        check_resumable(out, resume)
        check_out(out, resume, overwrite)
        _check_checkpoint(out, resume)
        return _guarded_run(cfg, resume, overwrite, progress)


def _check_checkpoint(out: Path, resume: bool) -> None:
    """A resumed run's checkpoint, checked before data and models load."""
    if resume:
        from retort.training.checkpoint import check_checkpoint  # noqa: PLC0415  (torch)

        check_checkpoint(out / "checkpoint")


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
        source = f"{copied['from']} (its own tokenizer)" if copied.get("from") else "the teacher"
        pruned = copied.get("pruned_from_teacher")
        print(
            f"student initialised from {source}: {copied['copied']} tensors copied, {copied['own']} its own"
            + (f"; layers {pruned['layers']}, hidden {pruned['hidden']}, heads {pruned['heads']}" if pruned else "")
            + (f", {len(zeros)} zero-filled (the teacher has none: {', '.join(zeros)})" if zeros else "")
            + (f", {len(left)} teacher tensors with no place in it (first: {left[0]})" if left else "")
        )
