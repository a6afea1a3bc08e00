"""retort's on-disk cache: where it is, what it holds, and removing what is no longer wanted.

``$RETORT_CACHE`` (default ``~/.cache/retort``) holds two kinds of entry, one folder each:

- ``teacher_outputs/KEY``: a teacher's logits (and, for ``--cache-teacher all``, hidden states and
  attention maps) on one run's rows (``distill/teacher_cache.py``). The key covers the teacher's files
  and every token id, so an entry is reused only by the same teacher on the same rows: a rerun, a
  resumption, the demo again. Every distillation run makes one; they are never removed by themselves.
  ``teacher_outputs/rows-KEY``: one teacher's logits by input row (``RowLogits``), shared by every split
  that holds the row.
- ``corpus/KEY``: a corpus tokenised into shards for general distillation (``data/corpus.py``).

An entry's "last used" time is its ``meta.json``'s modification time, which the cache sets each time it
opens the entry (``touch``). ``retort cache list`` shows the entries; ``retort cache clear`` removes
them (all, by kind, or those unused for N days). A removal renames the entry first, so a half-removed
entry is never read as a cache; a run that has an entry open keeps reading the files it holds (Linux
keeps them until they are closed) and its next run makes the entry again.

Making room (``make_room``): before a new teacher-output entry is made, entries no process holds open
(``hold``: a shared lock on ``ENTRY/in-use.lock`` for as long as the process lives) are removed, least
recently used first, while the disk would keep less than 1 GiB free, or while the kind's entries would
pass ``$RETORT_CACHE_MAX_GIB`` (unset: no cap). Each removal is a note on stderr. An entry in use is never
removed this way: its space would come back only when its run ends.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from retort.errors import ConfigError
from retort.paths import discard_dir

KINDS = ("teacher_outputs", "corpus", "teacher_embeddings")
_REMOVING = ".removing"
_IN_USE = "in-use.lock"
LIMIT_ENV = "RETORT_CACHE_MAX_GIB"  # the most the teacher-output entries may take together (unset: no cap)
RESERVE = 1 << 30  # the disk kept free when an entry is made (checkpoints and models need room too)


def cache_dir() -> Path:
    """The cache root: ``$RETORT_CACHE`` if set, else ``~/.cache/retort`` (not created here)."""
    return Path(os.environ.get("RETORT_CACHE") or Path.home() / ".cache" / "retort")


def touch(entry: Path) -> None:
    """Mark the entry used now (its ``meta.json``'s modification time)."""
    meta = entry / "meta.json"
    try:
        os.utime(meta)
    except OSError:  # no meta.json yet, or a read-only cache: the time is a hint, not a need
        pass


def hold(entry: Path) -> int | None:
    """Make ``entry``'s folder if needed and mark it in use by this process until it exits or closes the
    returned descriptor: a shared lock on ``ENTRY/in-use.lock``, which ``in_use`` sees from any process and
    ``make_room`` respects (None where locks are missing). Should a removal take the folder between its
    making and the lock, the folder is made and locked again: a held entry is always the one at ``entry``."""
    try:
        import fcntl  # noqa: PLC0415  (POSIX only)
    except ImportError:
        entry.mkdir(parents=True, exist_ok=True)
        return None
    while True:
        entry.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(entry / _IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # removed just now: again
            continue
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if os.stat(entry / _IN_USE).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the lock is on a removed folder's file: again


def _lock_idle(entry: Path) -> int | None:
    """An exclusive lock on ``entry`` when no process holds it (its descriptor, to close when done), else
    None; an entry never held (no lock file) has nothing to lock: -1."""
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:
        return None
    try:
        fd = os.open(entry / _IN_USE, os.O_RDWR)
    except FileNotFoundError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def in_use(entry: Path) -> bool:
    """Whether a process holds ``entry`` (``hold``); True where locks are missing (nothing is assumed idle)."""
    fd = _lock_idle(entry)
    if fd is not None and fd >= 0:
        os.close(fd)  # closing releases the lock it got
    return fd is None


def limit_bytes() -> int | None:
    """``$RETORT_CACHE_MAX_GIB`` in bytes, or None when unset; a value that is not a number > 0 is refused."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return None
    try:
        gib = float(raw)
    except ValueError:
        gib = float("nan")
    if not gib > 0:
        raise ConfigError(f"{LIMIT_ENV}={raw}: a number of GiB greater than 0 (or unset: no cap)")
    return int(gib * 2**30)


def make_room(need: int, kind: str = "teacher_outputs", root: Path | None = None) -> bool:
    """Remove entries of ``kind`` that no process holds (``in_use``), least recently used first, until
    ``need`` more bytes fit: the disk keeps ``RESERVE`` free and the kind stays within ``limit_bytes``.
    Leftovers and entries in use are kept; each removal is a note on stderr. Returns whether ``need`` fits."""
    root = root or cache_dir()
    cap = limit_bytes()
    mine = [e for e in entries(root) if e.kind == kind and not e.leftover]
    total = sum(e.bytes for e in mine)
    for e in mine:  # oldest use first
        if not _short(root, need, total, cap):
            break
        fd = _lock_idle(e.path)  # kept while it goes, so that no run takes it up meanwhile (``hold`` retries)
        if fd is None:
            continue
        try:
            remove(e)
        finally:
            if fd >= 0:
                os.close(fd)
        total -= e.bytes
        print(f"note: cache: removed {e.name} ({e.bytes / 2**30:.2f} GiB, {e.holds or 'unknown'}) to make room for "
              f"{need / 2**30:.2f} GiB", file=sys.stderr, flush=True)  # fmt: skip
    return not _short(root, need, total, cap)


def _short(root: Path, need: int, total: int, cap: int | None) -> bool:
    """Whether ``need`` more bytes would leave the disk under ``RESERVE`` free or the kind over ``cap``."""
    return need > shutil.disk_usage(_existing(root)).free - RESERVE or (cap is not None and total + need > cap)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@dataclass
class Entry:
    """One cache entry (or a leftover temporary folder) as ``retort cache list`` shows it."""

    kind: str  # one of KINDS
    path: Path
    bytes: int
    last_used: float  # seconds since the epoch
    leftover: bool  # a temporary folder a stopped writer left (``KEY.PID.tmp``) or a stopped removal
    holds: str = ""  # what its meta.json says it holds

    @property
    def name(self) -> str:
        """``KIND/FOLDER``, the name ``retort cache`` prints and accepts."""
        return f"{self.kind}/{self.path.name}"


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512  # on disk, not the sparse length
            except OSError:
                pass
    return total


def _last_used(folder: Path) -> float:
    meta = folder / "meta.json"
    try:
        return meta.stat().st_mtime if meta.exists() else folder.stat().st_mtime
    except OSError:
        return 0.0


def _rows_kept(folder: Path) -> int:
    """How many distinct rows a row store of teacher logits holds (``distill/teacher_cache.RowLogits``)."""
    import numpy as np  # noqa: PLC0415  (only when the cache has a row store)

    seen: set[bytes] = set()
    for shard in sorted(folder.glob("*.npz")):
        try:
            with np.load(shard) as z:
                seen.update(z["hashes"].tolist())
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # a damaged shard is not counted
            continue
    return len(seen)


def _holds(kind: str, folder: Path) -> str:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(meta, dict):
        return ""
    if kind == "corpus":
        shards = meta.get("shards") or []
        seqs, toks = sum(s.get("sequences", 0) for s in shards), sum(s.get("tokens", 0) for s in shards)
        return f"{seqs:,} sequences, {toks:,} tokens" + ("" if meta.get("done") else " (so far)")
    if meta.get("what") == "logits by row":  # a row store: its shards say how many rows it holds
        return f"logits by row ({meta.get('dtype', '?')}), {_rows_kept(folder):,} rows, {meta.get('teacher', '?')}"
    what = f"{meta.get('what', '?')} ({meta.get('dtype', '?')}), {meta.get('examples', 0):,} rows"
    return f"{what}, {meta['source']}" if meta.get("source") else what


def entries(root: Path | None = None) -> list[Entry]:
    """Every entry under ``root`` (default ``cache_dir()``), oldest use first."""
    root = root or cache_dir()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"RETORT_CACHE {root}: not a folder")
    found = []
    for kind in KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for p in sorted(base.iterdir()):
            if p.is_dir() and not p.is_symlink():
                leftover = p.name.endswith((".tmp", _REMOVING))
                found.append(Entry(kind, p, _size(p), _last_used(p), leftover, _holds(kind, p)))
    return sorted(found, key=lambda e: e.last_used)


def select(found: list[Entry], kind: str | None = None, older_than_days: float | None = None) -> list[Entry]:
    """The entries of ``kind`` (all kinds when None) unused for more than ``older_than_days`` (any age
    when None). Leftovers of stopped writers match whatever their age, unless a writer may still be at
    work (touched in the last hour)."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"--kind {kind}: one of {', '.join(KINDS)}")
    if older_than_days is not None and not older_than_days >= 0:
        raise ConfigError(f"--older-than {older_than_days}: a number of days, 0 or more")
    now = time.time()
    out = []
    for e in found:
        if kind is not None and e.kind != kind:
            continue
        age_days = (now - e.last_used) / 86400
        if e.leftover and e.path.name.endswith(".tmp") and now - e.last_used < 3600:
            continue  # perhaps being written right now
        if older_than_days is None or e.leftover or age_days > older_than_days:
            out.append(e)
    return out


def remove(entry: Entry) -> None:
    """Rename, then delete: a stop part-way leaves a ``.removing`` folder no cache reads."""
    if entry.path.name.endswith(_REMOVING):  # a removal stopped part-way: finish it
        shutil.rmtree(entry.path)
    else:
        discard_dir(entry.path, entry.path.with_name(f"{entry.path.name}.{os.getpid()}{_REMOVING}"))
