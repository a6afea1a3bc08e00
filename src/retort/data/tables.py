"""A user's data as rows, read as they are needed: CSV, TSV, JSON Lines, Parquet, a ``datasets``
``save_to_disk`` folder, or ``hf:NAME[:CONFIG]`` through ``datasets.load_dataset`` (the hub code path; offline
it reads the local cache). Each row comes with where it is (``file:line`` or ``source row N``), so every fault
names its place. Nothing is read whole that does not need to be: the text formats stream line by line and
the Arrow ones are memory-mapped by ``datasets``.

CSV and TSV are read with Python's ``csv`` (RFC 4180 quoting, a tab for TSV), UTF-8 with or without a
byte-order mark; a header row is required and names the columns.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from retort.data.files import check_file, check_text, describe, exists, refusal
from retort.errors import DataError

FORMATS = ("csv", "tsv", "jsonl", "parquet", "arrow", "hf")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
FIELD_LIMIT = 1_000_000  # characters in one CSV field


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


def rows(source: str, fmt: str, split: str = "train") -> Iterator[tuple[str, dict]]:
    """(where, row) for every row of ``source`` read as ``fmt``; ``split`` names the split of a hub dataset."""
    if fmt in ("csv", "tsv"):
        return _delimited(source, "\t" if fmt == "tsv" else ",")
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


def _delimited(source: str, delimiter: str) -> Iterator[tuple[str, dict]]:
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    with _open_text(source) as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{source}: empty file (a header row naming the columns is needed)")
            header = [h.strip() for h in header]
            _check_header(source, header)
            for row in reader:
                where = f"{source}:{reader.line_num}"
                if not row or row == [""]:
                    continue  # a blank line
                if len(row) != len(header):
                    raise DataError(f"{where}: {len(row)} fields, the header has {len(header)}")
                yield where, dict(zip(header, row))
        except UnicodeDecodeError as e:
            line = _first_bad_line(source)
            raise DataError(f"{source}:{line}: not UTF-8 text ({e.reason}); save it as UTF-8") from None
        except csv.Error as e:
            raise DataError(f"{source}:{reader.line_num}: {e}") from None


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
    seen: set[str] = set()
    for i, name in enumerate(header, start=1):
        if not name:
            raise DataError(f"{source}:1: column {i} has no name in the header")
        if name in seen:
            raise DataError(f"{source}:1: column {name!r} appears twice in the header; keep one")
        seen.add(name)


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
        raise DataError(f"{source}: cannot be read as {fmt} ({first})") from None
    for i, row in enumerate(ds):
        yield f"{source} row {i + 1}", row
