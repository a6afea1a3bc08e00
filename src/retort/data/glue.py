"""Tasks: the nine GLUE tasks in one table, with TSV readers for the official layout and the hub fallback,
and the user's own tasks (``data/spec.py`` resolves a spec into a ``Task`` and registers it here; their rows
are read by ``data/tables.py``).

Files are read by header name with ``csv.QUOTE_NONE`` and ``utf-8-sig`` (MRPC starts with a BOM);
CoLA has no header and is read by position. Labels are integers in GLUE order, the same order
that the Hugging Face ``nyu-mll/glue`` dataset uses, so both sources give the same integers.
"""

from __future__ import annotations

import csv
import glob
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from retort.data.files import check_file, check_text, describe, exists, not_utf8, refusal
from retort.errors import DataError


@dataclass(frozen=True)
class Task:
    """Everything retort needs to know about one task: a GLUE task, or one of the user's (``files`` set)."""

    name: str  # canonical name, as in the GLUE folder ("STS-B")
    hub_config: str  # config name of nyu-mll/glue ("stsb")
    text_columns: tuple[str, ...]  # header names of the text fields, one or two
    label_column: str | None  # header name of the gold label
    label_names: tuple[str, ...] | None  # label strings in GLUE order; None for regression
    metrics: tuple[str, ...]  # metric names, see retort.evaluation.metrics
    primary_metric: str  # picks the best checkpoint
    dev_splits: tuple[str, ...] = ("dev",)
    hub_text_columns: tuple[str, ...] = ()
    positional: dict[str, int] = field(default_factory=dict)  # for header-less files (CoLA)
    label_values: tuple[str, ...] | None = None  # how labels are written in the TSV, if not label_names
    label_range: tuple[float, float] | None = None  # a regression label's allowed range (STS-B: 0 to 5)
    files: tuple[tuple[str, str], ...] = ()  # a user's task: (split, source); source "" for a carved dev split
    data_format: str = ""  # a user's task: csv, tsv, jsonl, parquet, arrow or hf (data/tables.py)
    spec: str = ""  # a user's task: its resolved spec as JSON (data/spec.py), kept in every folder made with it
    multi_label: bool = False  # each row holds a set of labels (a multi-hot label; sigmoid outputs)
    label_sep: str = ","  # multi-label: what separates the labels of a row written as text ("a,b")

    @property
    def is_glue(self) -> bool:
        """True for the nine built-in GLUE tasks."""
        return not self.files

    @property
    def problem_type(self) -> str:
        """transformers' ``problem_type``: regression, single_label_classification or
        multi_label_classification."""
        if self.is_regression:
            return "regression"
        return "multi_label_classification" if self.multi_label else "single_label_classification"

    @property
    def is_regression(self) -> bool:
        """True for a scored task (STS-B): no label names, one output."""
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        """The classifier's output count: 1 for regression, else the number of label names."""
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        """True when each example has two texts (sentence pairs, as MRPC or STS-B)."""
        return len(self.text_columns) == 2


# one row per task: name, hub config, text columns, label column, label names (None: regression),
# metrics, primary metric; then the fields that differ from their defaults
TASKS: dict[str, Task] = {t.name: t for t in [
    Task("CoLA", "cola", ("sentence",), "label", ("unacceptable", "acceptable"), ("mcc",), "mcc",
         hub_text_columns=("sentence",), positional={"label": 1, "sentence": 3}, label_values=("0", "1")),
    Task("SST-2", "sst2", ("sentence",), "label", ("negative", "positive"), ("accuracy",), "accuracy",
         hub_text_columns=("sentence",), label_values=("0", "1")),
    Task("MRPC", "mrpc", ("#1 String", "#2 String"), "Quality", ("not_equivalent", "equivalent"),
         ("accuracy", "f1"), "f1", hub_text_columns=("sentence1", "sentence2"), label_values=("0", "1")),
    Task("STS-B", "stsb", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman"), "pearson",
         hub_text_columns=("sentence1", "sentence2"), label_range=(0.0, 5.0)),
    Task("QQP", "qqp", ("question1", "question2"), "is_duplicate", ("not_duplicate", "duplicate"),
         ("accuracy", "f1"), "f1", hub_text_columns=("question1", "question2"), label_values=("0", "1")),
    Task("MNLI", "mnli", ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"),
         ("accuracy",), "accuracy", dev_splits=("dev_matched", "dev_mismatched"),
         hub_text_columns=("premise", "hypothesis")),
    Task("QNLI", "qnli", ("question", "sentence"), "label", ("entailment", "not_entailment"), ("accuracy",),
         "accuracy", hub_text_columns=("question", "sentence")),
    Task("RTE", "rte", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), ("accuracy",),
         "accuracy", hub_text_columns=("sentence1", "sentence2")),
    Task("WNLI", "wnli", ("sentence1", "sentence2"), "label", ("not_entailment", "entailment"), ("accuracy",),
         "accuracy", hub_text_columns=("sentence1", "sentence2"), label_values=("0", "1")),
]}  # fmt: skip


@dataclass
class Example:
    """One example: its text or text pair and its label as the task reads it."""

    texts: tuple[str, ...]
    label: float | int | None  # int class id, float score, or None (test split)


@dataclass
class Split:
    """The examples of one split plus what reading them found."""

    task: Task
    name: str
    examples: list[Example]
    source: str  # file path or hub id
    skipped: list[str] = field(default_factory=list)  # one message per skipped bad row

    def __len__(self) -> int:
        return len(self.examples)


# --------------------------------------------------------------------------------------------
# where the data is


def resolve_glue_dir(glue_dir: str | os.PathLike | None) -> Path | None:
    """``--glue-dir``, else ``$GLUE_DIR``, else None (meaning: the Hugging Face hub)."""
    if glue_dir:
        return Path(glue_dir)
    env = os.environ.get("GLUE_DIR")
    return Path(env) if env else None


def split_file(task: Task, glue_dir: Path, split: str) -> Path:
    """The TSV of one split. MNLI's train may be a documented subset (``train_subset_*.tsv``)."""
    folder = glue_dir / task.name
    if not folder.is_dir():
        found = describe(folder) or "a file"
        what = "no such task folder" if found == "no such file" else refusal(found, "a task folder")
        raise DataError(f"{folder}: {what} (is --glue-dir right?)")
    path = folder / f"{split}.tsv"
    if exists(path):  # a folder, a FIFO or a symlink loop there is named as such
        return check_file(path)
    if split == "train":
        subsets = sorted(glob.glob(str(folder / "train_subset_*.tsv")))
        if len(subsets) == 1:
            return Path(subsets[0])
    raise DataError(f"{path}: no such file")


# --------------------------------------------------------------------------------------------
# TSV reader


FIELD_LIMIT = 1_000_000  # characters in one TSV field (csv's own default, 131,072, is below real long texts)


def _lines(path: Path):
    """The file's lines as bytes, read as they are needed (a row cap stops reading early). What is no
    regular file (a folder, a FIFO) is refused before it is opened; UTF-16 or UTF-32 text is named."""
    check_file(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        head = f.read(65536)
        check_text(path, head)
        if b"\r" in head and b"\n" not in head and len(head) > 0:
            raise DataError(f"{path}: lines end in CR only (old Mac style); convert them to LF or CRLF")
        f.seek(0)
        first = True
        for line in f:
            if first and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            first = False
            yield line.rstrip(b"\n")


def read_tsv(task: Task, path: Path, split: str, skip_bad_rows: bool = False, max_samples: int | None = None) -> Split:
    """Read a GLUE TSV by header name; bad rows stop the run with ``file:line: fault``. With
    ``max_samples`` reading stops once that many examples are in."""
    lines = _lines(path)
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    has_header = not task.positional
    header: list[str] | None = None
    out = Split(task, split, [], str(path))

    def bad(lineno: int, fault: str) -> None:
        msg = f"{path}:{lineno}: {fault}"
        if not skip_bad_rows:
            raise DataError(msg)
        out.skipped.append(msg)

    for lineno, line in enumerate(lines, start=1):
        if max_samples is not None and len(out.examples) >= max_samples:
            break
        line = line.rstrip(b"\r")
        if b"\x00" in line:
            if header is None and has_header:
                raise DataError(f"{path}:{lineno}: NUL byte in the header (a binary file?)")
            col = line.index(b"\x00") + 1
            bad(lineno, f"NUL byte at column {col} (a binary file?)")
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            if header is None and has_header:
                raise DataError(f"{path}:{lineno}: header is not valid UTF-8: {not_utf8(line, e.start)}") from None
            bad(lineno, not_utf8(line, e.start))
            continue
        if len(text) > FIELD_LIMIT:
            bad(lineno, f"a row of {len(text):,} characters; at most {FIELD_LIMIT:,} are read")
            continue
        fields = next(csv.reader([text], delimiter="\t", quoting=csv.QUOTE_NONE))
        if has_header and header is None:
            header = fields
            columns = _columns_for(task, header, path, split)
            continue
        if not has_header and header is None:
            header = []
            columns = dict(task.positional)
            if split.startswith("test") and fields and fields[0] == "index":
                # CoLA's test split does have a header: index, sentence
                columns = {"sentence": fields.index("sentence")}
                header = fields
                continue
        width = len(header) if header else None
        if width and len(fields) != width:
            bad(lineno, f"expected {width} tab-separated columns, found {len(fields)}")
            continue
        if not width and len(fields) <= max(columns.values()):
            bad(lineno, f"expected at least {max(columns.values()) + 1} columns, found {len(fields)}")
            continue
        texts = tuple(fields[columns[c]] for c in task.text_columns)
        if any(not t.strip() for t in texts):
            bad(lineno, "empty text")
            continue
        label: float | int | None = None
        if "label" in columns:
            raw_label = fields[columns["label"]].strip()
            label = parse_label(task, raw_label)
            if label is None:
                bad(lineno, f"label {raw_label!r} is not one of {label_set(task)}")
                continue
        out.examples.append(Example(texts, label))
    if header is None and has_header:
        raise DataError(f"{path}: empty file")
    if not out.examples:
        why = f"all {len(out.skipped)} rows were bad" if out.skipped else "no data rows (header only?)"
        raise DataError(f"{path}: {why}")
    return out


def _columns_for(task: Task, header: list[str], path: Path, split: str) -> dict[str, int]:
    """Where the task's text and label columns are in ``header``: each present once; the label column may
    be missing only from a test split."""
    columns = {name: _column(header, name, path) for name in task.text_columns}
    if task.label_column in header:
        columns["label"] = _column(header, task.label_column, path)
    elif not split.startswith("test"):  # test splits have no label column; every other split has one
        raise DataError(
            f"{path}:1: no label column {task.label_column!r} in the header (its columns: {', '.join(header)})"
        )
    return columns


def _column(header: list[str], name: str, path: Path) -> int:
    """The position of column ``name``; a column missing or named twice is refused."""
    at = [i for i, h in enumerate(header) if h == name]
    if not at:
        raise DataError(f"{path}:1: no column {name!r} in the header (its columns: {', '.join(header)})")
    if len(at) > 1:
        where = ", ".join(str(i + 1) for i in at)
        raise DataError(f"{path}:1: column {name!r} appears {len(at)} times in the header (columns {where}); keep one")
    return at[0]


def label_set(task: Task) -> str:
    """The labels a row of ``task`` may hold, in words (for the error that names a bad one)."""
    if task.is_regression:
        low, high = task.label_range or (None, None)
        return f"a number from {low:g} to {high:g}" if low is not None else "a finite number"
    return ", ".join(task.label_values or task.label_names or ())


def parse_label(task: Task, raw) -> float | int | None:
    """A label as the model reads it: a class id, or a finite score within the task's range; None if bad."""
    if task.is_regression:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None
        low, high = task.label_range or (-math.inf, math.inf)
        return value if math.isfinite(value) and low <= value <= high else None
    values = task.label_values or task.label_names
    return values.index(raw) if raw in values else None


# --------------------------------------------------------------------------------------------
# Hugging Face hub (nyu-mll/glue) when no folder is given


def _hub_split_name(task: Task, split: str) -> str:
    return {
        "dev": "validation",
        "dev_matched": "validation_matched",
        "dev_mismatched": "validation_mismatched",
        "test_matched": "test_matched",
        "test_mismatched": "test_mismatched",
    }.get(split, split)


def load_split_from_hub(task: Task, split: str) -> Split:
    """Read a split from the ``nyu-mll/glue`` dataset (needs the optional ``datasets`` package)."""
    try:
        import datasets  # noqa: PLC0415  (optional dependency, imported only on this path)
    except ImportError:
        raise DataError(
            "no GLUE folder given (--glue-dir or $GLUE_DIR) and the 'datasets' package for the hub "
            "fallback is not installed (pip install 'retort[hub]')"
        ) from None
    hub_split = _hub_split_name(task, split)
    try:
        ds = datasets.load_dataset("nyu-mll/glue", task.hub_config, split=hub_split)
    except Exception as e:  # offline, hub unreachable, unknown split: one line, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"no GLUE folder given (--glue-dir or $GLUE_DIR) and nyu-mll/glue/{task.hub_config} "
            f"({hub_split}) could not be loaded from the hub: {first}"
        ) from None
    examples = []
    for row in ds:
        texts = tuple(row[c] for c in task.hub_text_columns)
        label = row.get("label")
        if label is not None and label < 0:  # the hub marks unlabelled test rows with -1
            label = None
        elif label is not None and task.is_regression:
            label = float(label)
        examples.append(Example(texts, label))
    return Split(task, split, examples, f"hf://nyu-mll/glue/{task.hub_config}/{hub_split}")
