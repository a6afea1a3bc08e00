"""What is at a path the user named as a data file, said in one line before anything reads it, and a text's
encoding named when it is not UTF-8.

- ``check_file``: a folder, a FIFO (named pipe), a socket, a device, a symlink loop or a dangling symlink
  where a file should be, each named as such. ``os.stat`` answers without opening the path, so a FIFO is
  never opened (an open would wait for a writer for ever).
- ``check_text``: the first bytes of a file: a UTF-32 or UTF-16 byte-order mark, or UTF-16 without one (a
  NUL every other byte), is named with the fix (save it as UTF-8), rather than called binary.
- ``not_utf8``: how to name a line that is not UTF-8 (Latin-1 or Windows-1252 most likely).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from retort.errors import DataError

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}
# byte-order marks, longest first (UTF-32 LE's starts with UTF-16 LE's): (mark, name, codec, code unit)
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)", "utf-32-le", 4),
    (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)", "utf-32-be", 4),
    (b"\xff\xfe", "UTF-16 (little-endian)", "utf-16-le", 2),
    (b"\xfe\xff", "UTF-16 (big-endian)", "utf-16-be", 2),
)


def describe(path: str | Path) -> str | None:
    """What ``path`` is when it is no regular file one can read, in words (``a folder``, ``a FIFO (named
    pipe)``, ``a symlink loop``, ...); None for a regular file. Never opens the path."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop (it points back to itself)"
        if e.errno == errno.ENOENT and os.path.islink(path):
            return f"a symlink to {os.readlink(path)}, which does not exist"
        if e.errno == errno.ENOENT:
            return "no such file"
        return f"cannot be read ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_file(path: str | Path, label: str = "") -> Path:
    """``path`` as a ``Path`` when it is a regular file; else a ``DataError`` naming what it is instead,
    under ``label`` (default: the path; e.g. ``--corpus c.txt``)."""
    found = describe(path)
    if found is None:
        return Path(path)
    raise DataError(f"{label or path}: {refusal(found)}")


def refusal(found: str, expected: str = "a file") -> str:
    """What ``describe`` found, as the reason a path is refused where ``expected`` should be."""
    if found == "no such file" or found.startswith(("a symlink", "cannot")):
        return found
    return f"is {found}, not {expected}"


def exists(path: str | Path) -> bool:
    """Whether anything is at ``path`` (a dangling symlink or a symlink loop included)."""
    return os.path.lexists(path)


def encoding_of(head: bytes, size: int) -> str | None:
    """The encoding the first bytes of a text file of ``size`` bytes show when it is not UTF-8: a UTF-16/32
    byte-order mark followed by text in that encoding (whole code units, lines or mostly ASCII), or UTF-16
    without a mark (a NUL in every other byte); None when they show none."""
    for bom, name, codec, unit in _BOMS:
        if head.startswith(bom) and size % unit == 0:
            body = head[len(bom) :]
            try:
                text = body[: len(body) - len(body) % unit].decode(codec)
            except UnicodeDecodeError:
                continue
            if _looks_like_text(text):
                return name
    sample = head[:4096]
    if len(sample) >= 8 and size % 2 == 0:
        pairs = len(sample) // 2
        even = sum(1 for i in range(0, 2 * pairs, 2) if sample[i] == 0)
        odd = sum(1 for i in range(1, 2 * pairs, 2) if sample[i] == 0)
        if odd > 0.4 * pairs and even == 0:
            return "UTF-16 (little-endian, no byte-order mark)"
        if even > 0.4 * pairs and odd == 0:
            return "UTF-16 (big-endian, no byte-order mark)"
    return None


def _looks_like_text(text: str) -> bool:
    """Whether decoded text reads as text: it has a line break or a tab, or is mostly ASCII (bytes that only
    happen to start with a byte-order mark decode to neither)."""
    return "\n" in text or "\t" in text or sum(c < "\x80" for c in text) > len(text) / 2


def check_text(path: str | Path, head: bytes) -> None:
    """Refuse a text file whose first bytes ``head`` show UTF-16 or UTF-32, naming the encoding and the fix."""
    name = encoding_of(head, os.stat(path).st_size)
    if name is not None:
        raise DataError(f"{path}: {name} text; save it as UTF-8 (retort reads UTF-8 only)")


def not_utf8(raw: bytes, start: int) -> str:
    """How a line that is not UTF-8 is named: where, and the likely encoding it is in."""
    try:
        raw.decode("cp1252")
    except UnicodeDecodeError:
        return f"bytes that are not UTF-8 at column {start + 1}"
    return f"bytes that are not UTF-8 at column {start + 1} (Latin-1 or Windows-1252?; save the file as UTF-8)"
