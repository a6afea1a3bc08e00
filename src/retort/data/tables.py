"""A user's data as rows, read as they are needed: CSV, TSV, JSON Lines, Parquet, a ``datasets``
``save_to_disk`` folder, or ``hf:NAME[:CONFIG]`` through ``datasets.load_dataset`` (the hub code path; offline
it reads the local cache). Each row comes with where it is (``file:line`` or ``source row N``), so every fault
names its place. Nothing is read whole that does not need to be: the text formats stream line by line and
the Arrow ones are memory-mapped by ``datasets``.

CSV and TSV are read with Python's ``csv``, UTF-8 with or without a byte-order mark: with RFC 4180 quoting
(``quoting: csv``), or with none (``quoting: none``: one row per line, every character text, as GLUE's TSVs
need). A header row names the columns, unless ``columns`` names them by position (a header-less file; a first
row that names any of them is that file's header after all, as CoLA's test file has). A row that cannot be
read comes as a ``Fault`` (its place and what is wrong), so a caller may stop or skip it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from retort.data.files import check_file, check_text, describe, exists, not_utf8, refusal
from retort.errors import DataError

FORMATS = ("csv", "tsv", "jsonl", "parquet", "arrow", "hf")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
QUOTING = ("csv", "none")
FIELD_LIMIT = 1_000_000  # characters in one CSV field


class Fault(str):
    """A row that cannot be read, in words; ``rows`` gives it in the row's place."""


def format_of(source: str) -> str:
    """The format a source's name shows: ``hf:`` a hub dataset, a folder an Arrow folder, else the extension."""
    if source.startswith("hf:"):
        return "hf"
    path = Path(source)
    if path.is_dir():
        return "arrow"
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        allowed = ", ".join(EXTENSIONS)
        raise DataError(f"{source}: cannot tell its format from the name (known: {allowed}); give format: in the spec")
    return fmt


def is_arrow_folder(path) -> bool:
    """Whether ``path`` is a folder ``datasets``' ``save_to_disk`` wrote (a dataset or a dataset dict)."""
    path = Path(path)
    return path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "dataset_info.json"))


def rows(
    source: str, fmt: str, split: str = "train", quoting: str = "csv", columns: tuple[str, ...] = ()
) -> Iterator[tuple[str, dict | Fault]]:
    """(where, row) for every row of ``source`` read as ``fmt``, or (where, ``Fault``) for a row that cannot be
    read; ``split`` names the split of a hub dataset; ``quoting`` and ``columns`` are for CSV and TSV."""
    if fmt in ("csv", "tsv"):
        delimiter = "\t" if fmt == "tsv" else ","
        if quoting == "none":
            return _unquoted(source, delimiter, tuple(columns))
        return _delimited(source, delimiter, tuple(columns))
    if fmt == "jsonl":
        return _jsonl(source)
    if fmt in ("parquet", "arrow", "hf"):
        return _arrow(source, fmt, split)
    raise DataError(f"format {fmt!r}: not one of {', '.join(FORMATS)}")


def _open_text(source: str):
    """A checked text file (a regular file, not UTF-16/32), open for reading as UTF-8."""
    if not exists(source):
        raise DataError(f"{source}: no such file")
    check_file(source)
    with open(source, "rb") as f:
        check_text(source, f.read(65536))
    return open(source, encoding="utf-8-sig", newline="")


def _delimited(source: str, delimiter: str, columns: tuple[str, ...] = ()) -> Iterator[tuple[str, dict | Fault]]:
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    with _open_text(source) as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            yield from _with_header(source, ((f"{source}:{reader.line_num}", row) for row in reader), columns)
        except UnicodeDecodeError as e:
            line = _first_bad_line(source)
            raise DataError(f"{source}:{line}: not UTF-8 text ({e.reason}); save it as UTF-8") from None
        except csv.Error as e:
            raise DataError(f"{source}:{reader.line_num}: {e}") from None


def _with_header(source: str, raw, columns: tuple[str, ...]) -> Iterator[tuple[str, dict | Fault]]:
    """(where, {column: value}) from (where, fields) rows: the first names the columns (or ``columns`` do),
    blank lines are passed over, a row that cannot be read stays a ``Fault`` (in the header it stops)."""
    header = None
    for where, row in raw:
        if isinstance(row, Fault):
            if header is None and not columns:
                raise DataError(f"{where}: the header: {row}")
            yield where, row
            continue
        if header is None:
            header = _header(source, row, columns)
            if header is not columns:
                continue
        if not row or row == [""]:
            continue  # a blank line
        yield where, _fields(row, header, columns)
    if header is None:
        raise DataError(f"{source}: empty file (a header row naming the columns is needed)")


def _header(source: str, first: list[str], columns: tuple[str, ...]) -> list[str] | tuple[str, ...]:
    """The column names: the first row's, checked; ``columns`` (the same object) for a header-less file
    whose first row names none of them."""
    if columns and not set(columns) & {f.strip() for f in first}:
        return columns
    header = [h.strip() for h in first]
    _check_header(source, header)
    return header


def _fields(row: list[str], header, columns: tuple[str, ...]) -> dict | Fault:
    """A row as {column: value}, or the fault of a row whose field count differs from the header's."""
    if len(row) == len(header):
        return dict(zip(header, row))
    if header is columns:
        return Fault(f"{len(row)} fields, the columns are {len(header)} ({', '.join(header)})")
    return Fault(f"{len(row)} fields, the header has {len(header)}")


def _unquoted(source: str, delimiter: str, columns: tuple[str, ...]) -> Iterator[tuple[str, dict | Fault]]:
    """One row per line, split at every delimiter (``csv.QUOTE_NONE``), read as bytes so that a line that is
    not UTF-8, holds a NUL byte or is too long is a ``Fault`` of its own (the header's faults stop)."""
    return _with_header(source, _split_lines(source, delimiter), columns)


def _split_lines(source: str, delimiter: str) -> Iterator[tuple[str, list[str] | Fault]]:
    for number, line in enumerate(_lines(source), start=1):
        line = line.rstrip(b"\r")
        if b"\x00" in line:
            yield f"{source}:{number}", Fault(f"NUL byte at column {line.index(bytes(1)) + 1} (a binary file?)")
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield f"{source}:{number}", Fault(not_utf8(line, e.start))
            continue
        if len(text) > FIELD_LIMIT:
            yield f"{source}:{number}", Fault(f"a row of {len(text):,} characters; at most {FIELD_LIMIT:,} are read")
            continue
        yield f"{source}:{number}", text.split(delimiter)  # csv.QUOTE_NONE, no escape character: split at each


def _lines(path: str):
    """The file's lines as bytes, read as they are needed (a row cap stops reading early), a byte-order mark
    dropped. What is no regular file is refused before it is opened; UTF-16/32 text and CR-only lines are
    named."""
    if not exists(path):
        raise DataError(f"{path}: no such file")
    check_file(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        head = f.read(65536)
        check_text(path, head)
        if b"\r" in head and b"\n" not in head:
            raise DataError(f"{path}: lines end in CR only (old Mac style); convert them to LF or CRLF")
        f.seek(0)
        for number, line in enumerate(f):
            yield (line[3:] if number == 0 and line.startswith(b"\xef\xbb\xbf") else line).rstrip(b"\n")


def _first_bad_line(source: str) -> int:
    """The number of the first line that is not UTF-8 (the text reader decodes ahead, so its position when
    decoding fails is not the line's)."""
    with open(source, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


def _check_header(source: str, header: list[str]) -> None:
    for i, name in enumerate(header, start=1):
        if not name:
            raise DataError(f"{source}:1: column {i} has no name in the header")
        at = [j for j, h in enumerate(header, start=1) if h == name]
        if len(at) > 1:
            where = ", ".join(map(str, at))
            raise DataError(f"{source}:1: column {name!r} appears {len(at)} times in the header (columns {where}); "
                            "keep one")  # fmt: skip


def _jsonl(source: str) -> Iterator[tuple[str, dict]]:
    with _open_text(source) as f:
        number = 0
        try:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise DataError(f"{source}:{number}: not a JSON object ({e})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{source}:{number}: a JSON {type(row).__name__}, not an object")
                yield f"{source}:{number}", row
        except UnicodeDecodeError as e:
            line = _first_bad_line(source)
            raise DataError(f"{source}:{line}: not UTF-8 text ({e.reason}); save it as UTF-8") from None


def _arrow(source: str, fmt: str, split: str) -> Iterator[tuple[str, dict]]:
    try:
        import datasets  # noqa: PLC0415  (optional: only these formats need it)
    except ImportError:
        raise DataError(f"{source}: reading {fmt} needs the 'datasets' package (pip install 'retort[data]')") from None
    datasets.disable_progress_bars()
    try:
        if fmt == "hf":
            name, _, config = source[3:].partition(":")
            ds = datasets.load_dataset(name, config or None, split=split)
        elif fmt == "parquet":
            found = describe(source)
            if found is not None:
                raise DataError(f"{source}: {refusal(found)}")
            ds = datasets.load_dataset("parquet", data_files=str(source), split="train")
        else:
            ds = datasets.load_from_disk(str(source))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"{source}: no split {split!r} in the folder (it has: {', '.join(ds)})")
                ds = ds[split]
    except DataError:
        raise
    except Exception as e:  # offline without a cache, a damaged file: one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"{source} ({split})" if fmt == "hf" else source
        raise DataError(f"{where}: cannot be {'loaded' if fmt == 'hf' else f'read as {fmt}'} ({first})") from None
    for i, row in enumerate(ds):
        yield f"{source} row {i + 1}", row
