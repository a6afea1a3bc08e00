"""Shared by the experiment scripts: run retort training commands once, resumably, from one or more
processes at a time.

Each run directory is guarded by a file lock (``OUT.lock``, released by the kernel if the process dies), so
two copies of an experiment script started side by side never train the same run twice: the second one
skips runs the first is busy with (``work_through``), or waits for them (``retort``). The command a run was
made with is kept in ``OUT/command.json``; asking for the same run directory with different arguments is
an error instead of silently reusing a result made with other settings.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from retort.data.glue import get_task, split_file
from retort.data.transfer import parse_spec
from retort.errors import RetortError

# arguments that change how fast a run goes, not what it computes
_NEUTRAL = {"--threads", "--no-progress"}


class OneLineParser(argparse.ArgumentParser):
    """An experiment script's options: a mistake is one line and exit 2, like retort's own commands."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def check_options(p: argparse.ArgumentParser, a: argparse.Namespace, glue_tasks: list[str],
                  at_least_1: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Before any run starts: each task is known and has a training file under ``a.glue_dir``; each
    option named in ``at_least_1`` (attribute names) is unset or 1 or more. ``p.error`` otherwise."""
    for name in at_least_1:
        value = getattr(a, name)
        if value is not None and int(value) < 1:
            p.error(f"--{name.replace('_', '-')} {value}: at least 1")
    for task in dict.fromkeys(glue_tasks):
        try:
            known = get_task(task)
        except RetortError as e:
            p.error(f"--tasks: {e}")
        try:
            split_file(known, Path(a.glue_dir), "train")
        except RetortError as e:
            p.error(f"--glue-dir {a.glue_dir}: {e}")


@contextmanager
def locked(path: Path, block: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if needed). Yields False instead of waiting when
    ``block`` is False and another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _identity(args: list[str]) -> list[str]:
    """The command's meaning: subcommand words, then its options sorted, without the neutral ones."""
    words, groups = [], []
    for a in args:
        if a.startswith("--"):
            groups.append([a])
        elif groups:
            groups[-1].append(a)
        else:
            words.append(a)
    return words + [x for g in sorted(groups) if g[0] not in _NEUTRAL for x in g]


def retort(args: list[str], out: Path, quiet: bool = True) -> dict:
    """Run ``retort ARGS --out OUT`` unless OUT/metrics.json exists; resume from OUT/checkpoint if one
    is there. Waits while another process works on OUT. Returns OUT/metrics.json."""
    out = Path(out)
    with locked(out.with_name(out.name + ".lock")):
        record = out / "command.json"
        if record.exists():
            before = json.loads(record.read_text())
            if before != _identity(args):
                raise SystemExit(f"{out} was made by a different command:\n  {before}\nnow asked:\n  {_identity(args)}")
        if not (out / "metrics.json").exists():
            cmd = [sys.executable, "-m", "retort", *args, "--out", str(out), "--no-progress", "--overwrite"]
            if (out / "checkpoint" / "trainer_state.json").exists():
                cmd = [sys.executable, "-m", "retort", args[0], "--out", str(out), "--resume", "--no-progress"]
            print("+", " ".join(cmd), flush=True)
            out.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(_identity(args)))
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
        elif not record.exists():  # made before commands were recorded
            record.write_text(json.dumps(_identity(args)))
        return json.loads((out / "metrics.json").read_text())


def transfer_suffix(spec: str | None) -> str:
    """A transfer spec's run-folder suffix: ``MNLI:15000`` -> ``-mnli15k``, ``SST-2:20000`` -> ``-sst-2-20k``,
    ``aug:CoLA:20000`` -> ``-aug-cola20k``, ``data/pairs.tsv`` -> ``-pairs``; None -> ''."""
    if not spec:
        return ""
    name, n = parse_spec(spec)
    aug = "aug-" if name.startswith("aug:") else ""
    stem = Path(name.removeprefix("aug:")).stem.lower()
    count = "" if n is None else (f"{n // 1000}k" if n % 1000 == 0 else str(n))
    join = "-" if count and stem[-1:].isdigit() else ""
    return f"-{aug}{stem}{join}{count}"


def distill_command(task: str, glue_dir: str, teacher: str, student: str, seed: int, threads: int) -> list[str]:
    """``retort distill`` with the arguments every study's runs share; callers add the rest."""
    cmd = ["distill", "--task", task, "--glue-dir", glue_dir, "--teacher", teacher, "--student", student]
    return cmd + ["--seed", str(seed), "--threads", str(threads)]


def attention_transfer(cmd: list[str], out: Path, epochs: int, lr: float) -> dict:
    """Hedgehog's attention transfer (``--stage attention``: the learned feature maps alone) for the
    linear-student ``distill`` command ``cmd``; returns OUT/metrics.json. Shared by the depth and length
    studies, so the same student makes the same run in either."""
    return retort(
        [*cmd, "--feature-map", "hedgehog", "--stage", "attention", "--epochs", str(epochs), "--lr", str(lr)], out
    )


def work_through(jobs: dict[str, Callable[[], dict]], lock_dir: Path, poll_s: float = 20.0) -> dict[str, dict]:
    """Run every job once across all processes calling this with the same jobs and ``lock_dir``.

    A process takes the next job nobody holds; when every remaining job is held elsewhere it waits.
    Returns every job's result (a finished job's function is cheap to call again: its runs exist)."""
    pending = list(jobs)
    while pending:
        progressed = False
        for name in list(pending):
            with locked(lock_dir / f"{name.replace('/', '_')}.job.lock", block=False) as mine:
                if mine:
                    jobs[name]()
                    pending.remove(name)
                    progressed = True
        if pending and not progressed:
            time.sleep(poll_s)
    return {name: fn() for name, fn in jobs.items()}
