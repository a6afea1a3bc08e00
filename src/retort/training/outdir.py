"""A run folder that a failed run gives back as it found it.

``guarded(out)`` wraps a training run. Before it starts, what ``out`` holds is kept in ``out/.before``:
big files (weights, checkpoints, TensorBoard events: written once under temporary names, never changed
in place) as hard links, which cost no space, small ones (config, metrics, the log, which a resumed run
rewrites) as copies. Then:

- the run succeeds: ``.before`` is removed;
- the run is interrupted (Ctrl-C): its checkpoint is what ``--resume`` continues, so the folder stays as
  the run left it and ``.before`` is removed (a run killed outright leaves ``.before``, which the next
  run in the folder removes);
- the run fails (an error, a full disk, a loss that went NaN): everything it wrote is removed, what
  ``.before`` holds is put back, and the failed run's log is kept as ``failed-run.log.jsonl``.

Only a run's own files are kept and removed (``is_run_file``); anything else in the folder is left alone.

``locked(out)`` makes sure one process at a time writes a run folder: an ``flock`` on ``out/.lock``, which
holds the writer's process id and command line, taken before anything is written. A second writer (a run,
or a ``--resume``, into the same folder) is refused in one line naming the process that holds it, and the
running one goes on untouched. The kernel drops the lock when its process dies, however it dies; a lock
file left by a killed writer is taken over, and the takeover is said on stderr.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import sys
from pathlib import Path

from retort.errors import RetortError

# what a run writes and how its files are told from others: retort.outputs, which knows every kind of
# folder retort makes (RUN_FILES, FAILED_LOG and is_run_file are read from here too)
from retort.outputs import FAILED_LOG, RUN_FILES, is_run_file  # noqa: F401

BEFORE = ".before"
LOCK = ".lock"  # one writer per run folder (``locked``)
_LINK_ABOVE = 1 << 20  # bytes: files this big are linked, not copied


def _keep(src: Path, dst: Path) -> None:
    if src.is_dir() and not src.is_symlink():
        dst.mkdir()
        for child in src.iterdir():
            _keep(child, dst / child.name)
    elif src.stat().st_size >= _LINK_ABOVE:
        try:
            os.link(src, dst)
        except OSError:  # a file system without hard links
            shutil.copy2(src, dst)
    else:
        shutil.copy2(src, dst)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def snapshot(out: Path) -> Path | None:
    """Keep what ``out`` holds now in ``out/.before``; None when ``out`` does not exist yet."""
    if not out.is_dir():
        return None
    before = out / BEFORE
    _remove(before)  # a stale one, from a run that was killed outright
    tmp = out / (BEFORE + ".tmp")
    _remove(tmp)
    tmp.mkdir()
    for child in out.iterdir():
        if is_run_file(child.name):
            _keep(child, tmp / child.name)
    tmp.rename(before)
    return before


def restore(out: Path, existed: bool) -> Path | None:
    """Undo a failed run: remove what it wrote, put back what ``out/.before`` holds, keep its log.
    Returns where the failed run's log now is (None if it wrote none)."""
    if not out.is_dir():  # the run failed before it wrote anything
        return None
    log = out / "log.jsonl"
    failed_log = None
    if log.exists():
        failed_log = out / (FAILED_LOG + ".tmp")
        log.rename(failed_log)
    before = out / BEFORE
    for child in list(out.iterdir()):
        if is_run_file(child.name) and child != failed_log:
            _remove(child)
    if before.is_dir():
        for child in before.iterdir():
            child.rename(out / child.name)
        before.rmdir()
    if failed_log is not None:
        return failed_log.rename(out / FAILED_LOG)
    if not existed and not any(out.iterdir()):
        out.rmdir()
    return None


@contextlib.contextmanager
def guarded(out: str | Path, on_restore=None):
    """Run the body; on an error give ``out`` back as it was before (see the module docstring).
    ``on_restore(log_path)`` is told where the failed run's log was kept."""
    out = Path(out)
    existed = out.is_dir()
    snapshot(out)
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        _remove(out / BEFORE)
        raise
    except BaseException:
        log = restore(out, existed)
        if on_restore is not None:
            on_restore(log)
        raise
    _remove(out / BEFORE)
    _remove(out / FAILED_LOG)  # this run succeeded: an earlier failure's log says nothing of it


def clear(out: Path) -> None:
    """Remove a run's files from ``out`` (--overwrite), leaving anything else there."""
    if out.is_dir():
        for child in list(out.iterdir()):
            if is_run_file(child.name) and child.name != BEFORE:
                _remove(child)


@contextlib.contextmanager
def locked(out: str | Path):
    """Hold ``out/.lock`` (see the module docstring) while the body runs; ``out`` (and any missing folder
    above it) is made for it, and removed again at the end if nothing else was written there."""
    out = Path(out)
    made = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        fd = _acquire(out)
    except BaseException:
        _remove_made(made)
        raise
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            (out / LOCK).unlink()  # before the lock is dropped: a waiting writer then finds no file, or its own
        os.close(fd)
        _remove_made(made)


def _acquire(out: Path) -> int:
    """The file descriptor holding ``out/.lock``, with this process's id and command written in it."""
    path = out / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, command = _holder(fd)
            os.close(fd)
            raise RetortError(
                f"--out {out}: another process is writing this run folder (PID {pid or '?'}: {command or '?'}); "
                "let it finish or stop it first"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # its last holder removed it as we opened it: lock the new one
            same = False
        if same:
            break
        os.close(fd)
    pid, command = _holder(fd)
    if pid and pid != str(os.getpid()):
        print(f"{out}: taking over the lock of process {pid} ({command}), which is no longer running",
              file=sys.stderr, flush=True)  # fmt: skip
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{_command_line()}\n".encode("utf-8", "replace"), 0)
    return fd


def _command_line() -> str:
    """This process's command line on one line (``retort ...`` for the console script and ``-m retort``)."""
    argv = list(sys.argv) or ["?"]
    if Path(argv[0]).name in ("retort", "__main__.py"):
        argv[0] = "retort"
    return " ".join(shlex.join(argv).split())


def _holder(fd: int) -> tuple[str, str]:
    """(process id, command line) as the lock file ``fd`` holds them; empty strings where it holds none."""
    lines = os.pread(fd, 4096, 0).decode("utf-8", "replace").splitlines()
    pid = lines[0].strip() if lines and lines[0].strip().isdigit() else ""
    return pid, " ".join(lines[1:2]).strip()


def _remove_made(made: list[Path]) -> None:
    """Remove the folders ``locked`` made (deepest first) that are still empty."""
    for p in made:
        try:
            p.rmdir()
        except OSError:
            return
