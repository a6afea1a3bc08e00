"""Where a command may write: one output rule, applied by every command that writes, before any work.

A target (a file or a folder the command will write) is resolved, symlinks included, and refused in one
line naming the option, the path and why, when:

- it is too long for the file system: a name over ``NAME_MAX`` bytes, the whole path over ``PATH_MAX``;
- it exists and is not a regular file or a folder (a device, a FIFO, a socket: a rename would replace the
  node itself), or it is a folder where a file is expected and the reverse;
- it is, is inside, or (a folder) holds something the command reads (``reads``: the task's data folder,
  the model, the teacher, the index, the corpus);
- it is inside a folder retort made that is not the command's to change (a model, an export, a bi-encoder,
  an index, a sentence-transformers folder), or is one of a run folder's own files (a new run anywhere
  inside another run); a command's own default result beside its model (``own``: eval's
  ``RUN/eval_dev.json`` or ``EXPORT/eval_dev.json``, bench's ``MODEL/bench.json``) is the one exception;
- it is a folder that holds a model or a run and the command does not make that kind (``makes``): so
  ``--force`` and ``--overwrite`` never remove one that the command did not make;
- nothing can be written where it would go (a real probe: ``os.access`` says yes to root on a read-only
  file system).

``-`` stands for standard output where a command offers it (``eval``/``bench``/``dse search --json``,
``predict --out``); ``result_stream`` then sends everything else the command prints to stderr.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from retort.errors import RetortError

STDOUT = "-"
NAME_MAX, PATH_MAX = 255, 4096  # bytes, Linux's limits (a name; a whole path with its final NUL)

FAILED_LOG = "failed-run.log.jsonl"
# what a run writes (with .tmp / .old forms while it saves); 'retort teacher|distill|dse train' refuse
# a folder holding any of the first six unless --resume or --overwrite
RUN_FILES = ("config.yaml", "metrics.json", "log.jsonl", "model", "checkpoint", "tb", FAILED_LOG)

# folders retort (or transformers) makes that hold one thing, and the files that say which, in the order
# they are recognised (a sentence-transformers folder has a config.json too)
_LEAVES = (
    ("export", ("retort_export.json",)),
    ("bi-encoder", ("retort_dse.json",)),
    ("sentence-transformers model", ("modules.json",)),
    ("index", ("index.json", "embeddings.safetensors")),
)
_SPECIAL = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def is_run_file(name: str) -> bool:
    """Whether ``name`` (in a run folder) is one of a run's own files, in its final or temporary form."""
    return name.removesuffix(".tmp").removesuffix(".old") in RUN_FILES or name.endswith(".png")


def _run_file(name: str) -> bool:
    """A run file other than the config (which a folder may hold for other reasons)."""
    return name != "config.yaml" and name.removesuffix(".tmp").removesuffix(".old") in RUN_FILES


@dataclass(frozen=True)
class Input:
    """Something a command reads (a file or a folder), and how an error names it (``the RTE data``)."""

    path: str | Path
    what: str


def data_folder(glue_root: Path | None, task: str) -> Input | None:
    """The folder of ``task`` under the GLUE folder the command reads (None: the hub, nothing on disk)."""
    return Input(Path(glue_root) / task, f"the {task} data") if glue_root else None


def local(path: str | Path | None, what: str) -> Input | None:
    """``path`` as an input when it is on disk (a hub id or a missing path is no input here)."""
    return Input(path, what) if path and Path(path).exists() else None


def kind_of(folder: Path) -> str | None:
    """What retort-made thing ``folder`` holds: ``run``, ``model``, ``export``, ``bi-encoder``, ``index``,
    ``sentence-transformers model``; None for anything else (or nothing)."""
    try:
        if not folder.is_dir():
            return None
        for kind, marks in _LEAVES:
            if all((folder / m).exists() for m in marks):
                return kind
        if (folder / "config.json").is_file() and (any(folder.glob("model*.safetensors")) or any(folder.glob("*.bin"))):
            return "model"
        if (folder / "config.yaml").is_file() and any(_run_file(p.name) for p in folder.iterdir()):
            return "run"
    except OSError:  # unreadable: not ours to judge
        return None
    return None


def check_output(
    target: str | Path | None,
    option: str,
    *,
    reads: Iterable[Input | None] = (),
    folder: bool = False,
    makes: str | None = None,
    own: Iterable[str | Path] = (),
    parents: bool = False,
    stdout: bool = False,
) -> None:
    """Refuse ``target`` (given as ``option``) by the rule in the module docstring. ``folder``: the command
    writes a folder there (of kind ``makes``); ``parents``: missing folders above a file are made;
    ``stdout``: ``-`` means standard output. None (not given) passes."""
    if target is None or (stdout and str(target) == STDOUT):
        return
    shown = f"{option} {_show(target)}"
    where = _resolve(target, shown)
    _check_type(where, shown, folder)
    if where not in {_resolve(p, shown) for p in own}:
        for item in reads:
            if item is not None:
                _check_input(where, item, shown, folder)
        _check_foreign(where, shown, folder, makes)
    probe_writable(where if folder else where.parent, shown, make=folder or parents)


def check_writable(out: Path, option: str = "--out") -> None:
    """``out`` (a folder, or where one would be made) must take a new entry: a real probe."""
    shown = f"{option} {_show(out)}"
    where = _resolve(out, shown)
    _check_type(where, shown, folder=True)
    probe_writable(where, shown, make=True)


def probe_writable(folder: Path, shown: str, make: bool) -> None:
    """``folder`` (or, with ``make``, its nearest existing parent) takes a new entry; else one line."""
    parent = folder
    while make and not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RetortError(f"{shown}: no folder {parent} to write it in")
    try:
        Path(tempfile.mkdtemp(prefix=".retort-probe-", dir=parent)).rmdir()
    except OSError as e:
        raise RetortError(f"{shown}: cannot write in {parent} ({e.strerror})") from None


@contextlib.contextmanager
def result_stream(target: str | Path | None) -> Iterator[object | None]:
    """With ``target`` ``-`` the result owns standard output: while the body runs, everything else printed
    goes to stderr, and the stream yielded is where the result goes. Otherwise yields None."""
    if target is None or str(target) != STDOUT:
        yield None
        return
    real = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield real


def _show(path: str | Path) -> str:
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def _resolve(target: str | Path, shown: str) -> Path:
    """The absolute path ``target`` names, every symlink followed; too long or a loop is one line."""
    name_max, path_max = _limits(Path(target))
    for part in Path(target).parts:
        if len(os.fsencode(part)) > name_max:
            raise RetortError(
                f"{shown}: a name in it is {len(os.fsencode(part))} bytes; the file system allows {name_max}"
            )
    size = len(os.fsencode(os.path.abspath(target)))
    if size >= path_max:
        raise RetortError(f"{shown}: {size} bytes; a path may have at most {path_max - 1}")
    try:
        return Path(target).resolve()
    except RuntimeError:  # Python < 3.13: a symlink loop
        raise RetortError(f"{shown}: a symlink loop") from None
    except OSError as e:
        raise RetortError(f"{shown}: cannot follow it ({e.strerror})") from None


def _limits(target: Path) -> tuple[int, int]:
    """NAME_MAX and PATH_MAX of the file system ``target`` would be on (Linux's where it does not say)."""
    anchor = Path(os.path.abspath(target))
    while anchor != anchor.parent and not _exists(anchor):
        anchor = anchor.parent
    try:
        return os.pathconf(anchor, "PC_NAME_MAX"), os.pathconf(anchor, "PC_PATH_MAX")
    except (OSError, ValueError):
        return NAME_MAX, PATH_MAX


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name or a path too long to look at
        return False


def _check_type(where: Path, shown: str, folder: bool) -> None:
    try:
        mode = os.stat(where).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise RetortError(f"{shown}: cannot look at it ({e.strerror})") from None
    special = _SPECIAL.get(stat.S_IFMT(mode))
    if special:
        raise RetortError(f"{shown}: is {special}, not a regular {'folder' if folder else 'file'}; choose another path")
    if folder and not stat.S_ISDIR(mode):
        raise RetortError(f"{shown}: exists and is not a folder")
    if not folder and stat.S_ISDIR(mode):
        raise RetortError(f"{shown}: is a folder; give a file name")


def _check_input(where: Path, item: Input, shown: str, folder: bool) -> None:
    try:
        read = Path(item.path).resolve()
    except (OSError, RuntimeError):  # its own reader says what is wrong with it
        return
    if where == read:
        raise RetortError(f"{shown}: is an input of this command ({item.what}); choose another path")
    relation = "is inside" if read in where.parents else "holds" if folder and where in read.parents else None
    if relation:
        raise RetortError(f"{shown}: {relation} {item.path}, an input of this command ({item.what}); "
                          "choose another path")  # fmt: skip


def _check_foreign(where: Path, shown: str, folder: bool, makes: str | None) -> None:
    """Not inside a model-like folder, not onto a run's own files, and (a folder) not replacing a model or
    run the command does not make."""
    if folder:
        kind = kind_of(where)
        if kind is not None and kind != makes:
            raise RetortError(f"{shown}: holds a {kind}, which this command does not make and never replaces; "
                              "choose another folder")  # fmt: skip
    inner = where
    for above in where.parents:
        kind = kind_of(above)
        if kind == "run" and (makes == "run" or is_run_file(inner.name)) or kind not in (None, "run"):
            raise RetortError(f"{shown}: is inside {above}, a {kind} folder that this command did not make; "
                              "choose another path")  # fmt: skip
        inner = above
