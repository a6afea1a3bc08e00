"""Finished runs kept in a folder that git keeps, so that an experiment spread over several sittings loses nothing
when a sitting's machine does not keep its disk.

``keep_runs`` copies a finished run's small files (``metrics.json``, ``config.yaml``, ``command.json``, the log,
the dev predictions: what ``retort report`` reads) from OUT to the same place under KEEP; a teacher's folder
keeps its ``model/`` too (students still to train need it; ``paper.py``'s medium budget saves teachers in
float16, 45 MB each). A student's model and every resume checkpoint stay behind: they are large, and a finished
student is never trained again. ``restore_runs`` copies back into OUT every kept run that OUT lacks, before
any job starts, so the runner (``harness.retort``) sees them finished and the report reads them as before.

Each copy goes to a temporary name and is renamed, so a stop halfway leaves the old copy or none. OUT must be the
same path in every sitting: a run's recorded command names its teacher by its path (``harness.retort`` refuses a
run folder asked for by another command).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from harness import locked

# what stays behind: the resume state, TensorBoard's binary copy of log.jsonl, the run's own figures (drawn from
# log.jsonl; the report draws its own), unfinished writes, the runner's locks
LEFT = ("checkpoint", "tb", "*.png", "*.tmp", "*.old", "*.lock")


def _copy(src: Path, dst: Path, with_model: bool, run: Path) -> bool:
    """``src`` to ``dst`` through a temporary name of this process's (then renamed over any older copy), under
    the lock of ``run``, the run folder under OUT (the runner's own, ``harness.locked``: two workers never copy
    one run at once, nor while it trains); ``model/`` only ``with_model``. Nothing is copied when ``dst`` already
    holds every file of ``src`` (``_files``: a finished run changes only when a later step adds a file, such as
    the test-set predictions, and then the kept copy keeps what it held as well); returns whether a copy was
    made."""
    with locked(run.with_name(run.name + ".lock")):
        mine, kept = _files(src, with_model), _files(dst, with_model)
        if mine is None or (kept is not None and mine[-1] == kept[-1] and set(mine) <= set(kept)):
            return False  # nothing new (a file only the kept copy holds, from another sitting, stays)
        tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        ignore = shutil.ignore_patterns(*LEFT, *(() if with_model else ("model",)))
        if kept is not None and mine[-1] == kept[-1]:  # the same run with a file added: the kept copy, plus it
            shutil.copytree(dst, tmp)
        shutil.copytree(src, tmp, ignore=ignore, dirs_exist_ok=True)
        old = dst.with_name(f"{dst.name}.{os.getpid()}.old.tmp")
        if dst.exists():
            dst.rename(old)  # out of the way in one step: a stop now leaves the copy under a temporary name
        tmp.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
        return True


def _files(folder: Path, with_model: bool) -> list[tuple[str, int]] | None:
    """What a copy of ``folder`` holds: its kept files' paths and sizes, ``metrics.json``'s bytes beside them;
    None when it has no ``metrics.json``."""
    if not (folder / "metrics.json").is_file():
        return None
    left = [*LEFT, *(() if with_model else ("model",))]
    files = [(f.relative_to(folder).as_posix(), f.stat().st_size) for f in sorted(folder.rglob("*")) if f.is_file()]
    kept = [(n, s) for n, s in files if not any(fnmatch(part, pat) for part in n.split("/") for pat in left)]
    return [*kept, ((folder / "metrics.json").read_text(), 0)]


def is_teacher(folder: Path, root: Path) -> bool:
    """Whether a run folder under ``root`` is a teacher's (``root/teachers/TASK``): its model is kept."""
    return folder.relative_to(root).parts[0] == "teachers"


def keep_runs(out: Path, keep: Path, folders: Iterable[Path]) -> list[Path]:
    """Copy each finished run folder among ``folders`` (under ``out``) to the same place under ``keep``;
    returns the copies made. A folder without ``metrics.json`` (unfinished) is skipped."""
    made = []
    for folder in folders:
        if not (folder / "metrics.json").is_file():
            continue
        dst = keep / folder.relative_to(out)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if _copy(folder, dst, with_model=is_teacher(folder, out), run=folder):
            made.append(dst)
    return made


def restore_runs(keep: Path, out: Path) -> list[Path]:
    """Copy into ``out`` every run kept under ``keep`` that ``out`` has not finished; returns what was copied.
    A run ``out`` holds unfinished (a checkpoint from a sitting on this machine) is replaced by the kept one."""
    made = []
    for metrics in sorted(keep.rglob("metrics.json")) if keep.is_dir() else []:
        folder = metrics.parent
        if folder.name == "model" or folder.name.endswith(".tmp"):
            continue
        dst = out / folder.relative_to(keep)
        if (dst / "metrics.json").is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if _copy(folder, dst, with_model=True, run=dst):
            made.append(dst)
    return made


def keeping(jobs: dict[str, Callable[[], Any]], out: Path, keep: Path | None,
            folders: Callable[[str], list[Path]]) -> dict[str, Callable[[], Any]]:  # fmt: skip
    """``jobs`` whose each job, once done, keeps its run folders (``folders(name)``, every stage) under ``keep``;
    ``jobs`` as they are without ``keep``."""
    if keep is None:
        return jobs

    def kept(name: str, job: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            result = job()
            keep_runs(out, keep, folders(name))
            return result

        return run

    return {name: kept(name, job) for name, job in jobs.items()}
