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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
