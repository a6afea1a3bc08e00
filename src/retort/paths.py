"""Checks on the folders a command will write, made before any work (no torch, no models)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from retort.errors import RetortError


def check_writable(out: Path, option: str = "--out") -> None:
    """``out`` (or its nearest existing parent) must take a new entry: a real probe, since
    ``os.access`` says yes to root even where the file system says no (read-only, /proc)."""
    if out.exists() and not out.is_dir():
        raise RetortError(f"{option} {out}: exists and is not a folder")
    parent = out if out.is_dir() else out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    try:
        Path(tempfile.mkdtemp(prefix=".retort-probe-", dir=parent)).rmdir()
    except OSError as e:
        raise RetortError(f"{option} {out}: cannot write in {parent} ({e.strerror})") from None


def check_file_target(path: str | Path | None, option: str) -> None:
    """A file ``option`` will write: not a folder, in a folder that exists and takes a new entry; checked
    before any work, so a typo in a path is one line instead of a traceback at the end."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise RetortError(f"{option} {path}: is a folder; give a file name")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise RetortError(f"{option} {path}: no folder {parent} to write it in")
    check_writable(parent, option)


def discard_dir(path: Path, doomed: Path) -> None:
    """Delete the folder ``path`` by renaming it to ``doomed`` first (an earlier stop's leftover there is
    deleted), then deleting that: a stop part-way leaves ``doomed``, never a half-deleted ``path``."""
    import shutil  # noqa: PLC0415

    if doomed.exists():
        shutil.rmtree(doomed)
    path.rename(doomed)
    shutil.rmtree(doomed)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` under a temporary name beside ``path``, then rename: a reader (or a stop halfway)
    sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def publish_dir(tmp: Path, out: Path, between=None) -> None:
    """Put a finished folder written under a temporary name in place of ``out``, replacing it. There is
    a moment between the two renames when only ``OUT.old`` (complete) and ``tmp`` are on disk;
    ``models.hf.recover_dir`` undoes a stop at that moment. ``between`` is called there (fault
    injection in tests)."""
    import shutil  # noqa: PLC0415

    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    if between is not None:
        between()
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)
