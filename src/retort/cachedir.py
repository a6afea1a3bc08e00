"""retort's on-disk cache: where it is, what it holds, and removing what is no longer wanted.

``$RETORT_CACHE`` (default ``~/.cache/retort``) holds two kinds of entry, one folder each:

- ``teacher_outputs/KEY``: a teacher's logits (and, for ``--cache-teacher all``, hidden states and
  attention maps) on one run's rows (``distill/teacher_cache.py``). The key covers the teacher's files
  and every token id, so an entry is reused only by the same teacher on the same rows: a rerun, a
  resumption, the demo again. Every distillation run makes one; they are removed only by ``retort cache
  clear`` and by ``make_room`` (below).
  ``teacher_outputs/rows-KEY``: one teacher's logits by input row (``RowLogits``), shared by every split
  that holds the row.
- ``corpus/KEY``: a corpus tokenised into shards for general distillation (``data/corpus.py``).

An entry's "last used" time is its ``meta.json``'s modification time, which the cache sets each time it
opens the entry (``touch``). ``retort cache list`` shows the entries; ``retort cache clear`` removes
them (all, by kind, or those unused for N days). A removal renames the entry first, so a half-removed
entry is never read as a cache; a run that has an entry open keeps reading the files it holds (Linux
keeps them until they are closed) and its next run makes the entry again.

Making room (``make_room``): before a new teacher-output entry is made, entries no process holds open
(``hold``: a shared lock on ``ENTRY/in-use.lock`` for as long as the process keeps the entry open) are
removed, least recently used first, while the disk would keep less than 1 GiB free, or while the entries
would pass ``$RETORT_CACHE_MAX_GIB`` (unset: no cap). An entry counts at its full size (``meta.json``'s
``bytes``) while a run is still filling it, and that run's growth is taken from the free disk. Nothing is
removed when even removing every idle entry would not make room. Each removal is a note on stderr. Runs
that start together make room one at a time (``room_lock``), each holding its new entry before the next
counts. Row stores (``rows-KEY``) are small and shared: never removed this way.
"""

from __future__ import annotations

import contextlib
import json
import math
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
    """Make ``entry``'s folder if needed and mark it in use until the returned descriptor is closed (or the
    process ends): a shared lock on ``ENTRY/in-use.lock``, which ``in_use`` sees from any process and
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
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.stat(entry / _IN_USE).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the lock is on a removed folder's file: again


_GONE = -1  # _lock_idle's answer for an entry whose folder is gone


def _lock_idle(entry: Path, create: bool = True) -> int | None:
    """An exclusive lock on ``entry`` when no process holds it (its descriptor: close it when done), None
    when one does (or locks are missing), ``_GONE`` when the folder is gone. ``create``: make the lock file
    of an entry never held; without it such an entry is idle and nothing is locked (``_GONE`` too)."""
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:
        return None
    try:
        fd = os.open(entry / _IN_USE, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except (FileNotFoundError, NotADirectoryError):
        return _GONE
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def in_use(entry: Path) -> bool:
    """Whether a process holds ``entry`` (``hold``); True where locks are missing (nothing is assumed idle).
    Writes nothing (an entry never held is idle)."""
    fd = _lock_idle(entry, create=False)
    if fd is not None and fd != _GONE:
        os.close(fd)  # closing releases the lock it got
    return fd is None


@contextlib.contextmanager
def room_lock(root: Path | None = None, kind: str = "teacher_outputs"):
    """Held while a run makes room and takes up its new entry (``hold``), so that runs starting together
    count each other's entries: an exclusive lock on ``ROOT/KIND/.room.lock`` (nothing where locks are
    missing)."""
    base = (root or cache_dir()) / kind
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:
        yield
        return
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base / ".room.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def limit_bytes() -> int | None:
    """``$RETORT_CACHE_MAX_GIB`` in bytes, or None when unset; a value that is not a number > 0 is refused."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return None
    try:
        gib = float(raw)
    except ValueError:
        gib = float("nan")
    if not (gib > 0 and math.isfinite(gib)):
        raise ConfigError(f"{LIMIT_ENV}={raw}: a number of GiB greater than 0 (or unset: no cap)")
    return int(gib * 2**30)


def make_room(need: int, kind: str = "teacher_outputs", root: Path | None = None) -> bool:
    """Make room for a new entry of ``need`` bytes: the disk keeps ``RESERVE`` free (the growth of entries
    still being filled counted as used) and the kind's entries stay within ``limit_bytes``. Entries no process
    holds go, least recently used first, each a note on stderr; nothing goes when removing every idle one
    would not be enough. Returns whether ``need`` fits. Call it under ``room_lock``."""
    root = root or cache_dir()
    cap = limit_bytes()
    mine = [e for e in entries(root, describe=False)
            if e.kind == kind and not e.leftover and not e.path.name.startswith("rows-")]  # fmt: skip
    size = {e.path: max(e.bytes, _planned_bytes(e.path)) for e in mine}  # sparse while filling: its full size
    held = {e.path for e in mine if in_use(e.path)}
    growth = sum(size[e.path] - e.bytes for e in mine if e.path in held)
    total, idle = sum(size.values()), sum(size[e.path] for e in mine if e.path not in held)

    def fits(extra_free: int = 0, extra_total: int = 0) -> bool:
        free = free_bytes(root) - growth + extra_free
        return need <= free - RESERVE and (cap is None or total - extra_total + need <= cap)

    if not fits(extra_free=sum(e.bytes for e in mine if e.path not in held), extra_total=idle):
        return False  # not even with every idle entry gone: keep them
    for e in mine:  # oldest use first
        if fits():
            break
        if e.path in held:
            continue
        holds = _holds(kind, e.path) or "unknown"  # read while it is there
        removed = remove_idle(e)
        if removed is False:  # taken up meanwhile
            continue
        total -= size[e.path]
        if removed:
            print(f"note: cache: removed {e.name} ({e.bytes / 2**30:.2f} GiB, {holds}) to make room for "
                  f"{need / 2**30:.2f} GiB", file=sys.stderr, flush=True)  # fmt: skip
    return fits()


def remove_idle(entry: Entry) -> bool | None:
    """Remove ``entry`` unless a process holds it, locked while it goes so that no run takes it up meanwhile
    (``hold`` then makes it again). True: removed; False: in use, kept; None: already gone (another process
    removed it first). Leftovers have no lock to take: they are removed as they are."""
    if entry.leftover:
        remove(entry)
        return True
    fd = None
    for _ in range(3):  # a 'cache list' elsewhere locks an idle entry for an instant: look again
        fd = _lock_idle(entry.path)
        if fd is not None:
            break
        time.sleep(0.05)
    if fd is None:
        return False
    if fd == _GONE:
        return None
    try:
        remove(entry)
    except FileNotFoundError:  # another process removed it first
        return None
    finally:
        os.close(fd)
    return True


def _planned_bytes(entry: Path) -> int:
    """The size ``meta.json`` says the entry's arrays take once filled (0 when it does not say)."""
    try:
        n = json.loads((entry / "meta.json").read_text()).get("bytes")
    except (OSError, ValueError, AttributeError):
        return 0
    return int(n) if isinstance(n, int) and n > 0 else 0


def free_bytes(path: Path) -> int:
    """The free space on the disk that holds ``path`` (its nearest existing folder, when it is not made yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


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


def entries(root: Path | None = None, describe: bool = True) -> list[Entry]:
    """Every entry under ``root`` (default ``cache_dir()``), oldest use first; ``describe``: with what each
    holds (which reads every row store's shards)."""
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
                found.append(Entry(kind, p, _size(p), _last_used(p), leftover, _holds(kind, p) if describe else ""))
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
