"""Writing safely: a file or a folder written under a temporary name and renamed into place, what a writer
killed part-way left cleaned by the next one, and a library's failure to write (``SafetensorError``, onnx,
numpy) turned into an ``OSError`` naming the path, which the command line prints as one line. Where a
command may write at all is ``retort.outputs``."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from retort import outputs
from retort.errors import RetortError


def check_writable(out: Path, option: str = "--out") -> None:
    """``out`` (a folder, or where one would be made) must take a new entry (``outputs.check_writable``)."""
    outputs.check_writable(out, option)


def check_file_target(path: str | Path | None, option: str) -> None:
    """A file ``option`` will write, checked by the output rule before any work (``outputs.check_output``):
    not a folder nor a device, in a folder that exists and takes a new entry."""
    outputs.check_output(path, option)


def discard_dir(path: Path, doomed: Path) -> None:
    """Delete the folder ``path`` by renaming it to ``doomed`` first (an earlier stop's leftover there is
    deleted), then deleting that: a stop part-way leaves ``doomed``, never a half-deleted ``path``."""
    if doomed.exists():
        shutil.rmtree(doomed)
    path.rename(doomed)
    shutil.rmtree(doomed)


def is_dir(text: str) -> bool:
    """Whether ``text`` names a folder (False for a name the system refuses: too long, a NUL byte)."""
    try:
        return Path(text).is_dir()
    except (OSError, ValueError):
        return False


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


def write_result(target: str | Path, text: str, stream=None) -> str:
    """Write a command's result: to ``stream`` (standard output, ``outputs.result_stream``) when given, else
    to the file ``target`` with ``write_atomic``. Returns where it went, for the command's last line."""
    if stream is not None:
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()
        return "standard output"
    return str(write_atomic(target, text))


# errors that say the machine, not the input, stopped a write (a full disk, a read-only or forbidden
# place, a failing device, a file too big for the file system)
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG)
_OS_ERROR = re.compile(r"os error (\d+)")  # how Rust libraries (safetensors, tokenizers) report one


def disk_error(e: BaseException, path: str | Path | None = None) -> OSError | None:
    """``e`` as an ``OSError`` naming ``path`` (where it names none) when it is a failed write: an OSError,
    or a library's own exception (``SafetensorError``, onnx, onnxruntime) whose message holds an OS error
    (``os error 28``) or its text (``No space left on device``). None when it is not one."""
    if isinstance(e, RetortError):  # already one line, about the input
        return None
    if isinstance(e, OSError):
        if e.filename is None and path is not None and e.errno is not None:
            return OSError(e.errno, e.strerror or os.strerror(e.errno), str(path))
        return e
    text = str(e)
    code = next((int(m) for m in _OS_ERROR.findall(text)), None)
    if code is None:
        code = next((c for c in DISK_ERRNOS if os.strerror(c) in text), None)
    if code is None:
        return None
    return OSError(code, os.strerror(code), None if path is None else str(path))


@contextlib.contextmanager
def saving(path: str | Path) -> Iterator[None]:
    """Run a write of ``path``; a failure to write comes out as an ``OSError`` naming it (``disk_error``),
    anything else unchanged."""
    try:
        yield
    except Exception as e:
        converted = disk_error(e, path)
        if converted is None or converted is e:
            raise
        raise converted from e


def temp_dir(dest: Path) -> Path:
    """A new folder beside ``dest`` to write it in, ``.NAME.PID-XXXXXXXX.tmp``: the process id says
    whether its writer still runs (``clean_leftovers``)."""
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}-", suffix=".tmp", dir=dest.parent))


def clean_leftovers(dest: Path) -> list[Path]:
    """Remove what writers of ``dest`` killed part-way left beside it: ``temp_dir`` folders whose process
    is gone, and those of earlier versions (``tempfile.mkdtemp``'s 8 characters, no process id). Returns
    what was removed."""
    mine = re.compile(rf"\.{re.escape(dest.name)}\.(?:(\d+)-)?[a-z0-9_]{{8}}\.tmp")
    removed = []
    for p in dest.parent.iterdir() if dest.parent.is_dir() else ():
        m = mine.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink() and not (m.group(1) and _alive(int(m.group(1)))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
