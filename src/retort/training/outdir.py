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
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

BEFORE = ".before"
FAILED_LOG = "failed-run.log.jsonl"
_LINK_ABOVE = 1 << 20  # bytes: files this big are linked, not copied
# what a run writes (with .tmp / .old forms while it saves); 'retort teacher|distill|dse train' refuse
# a folder holding any of the first six unless --resume or --overwrite
RUN_FILES = ("config.yaml", "metrics.json", "log.jsonl", "model", "checkpoint", "tb", FAILED_LOG)


def is_run_file(name: str) -> bool:
    """Whether ``name`` (in a run folder) is one of a run's own files, in its final or temporary form."""
    base = name.removesuffix(".tmp").removesuffix(".old")
    return base in RUN_FILES or name.endswith(".png")


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
