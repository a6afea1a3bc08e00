"""Transfer sets: unlabelled inputs that the teacher labels while a student is distilled.

A student trained on the task's own training set sees only what the gold labels cover; the teacher can
label any input of the right shape, so extra inputs carry its knowledge further (Hinton et al.'s
"transfer set"; TinyBERT distils on augmented task data for the same reason). Transfer examples have
no gold label: the soft, hidden, attention and relation terms use them, the hard term skips them
(``collate`` gives a ``label_mask``).

A spec names one source:

    TASK[:N]   the texts of another GLUE task's training split, labels dropped (pair tasks for a pair
               task, single-sentence tasks for a single-sentence one), e.g. MNLI:20000 for STS-B
    aug:TASK[:N]
               N word-edited copies of TASK's training texts (data/augment.py: drops, swaps,
               replacements, repeats; TinyBERT augments its task data the same way); for the task being
               distilled, copies of the rows the student trains on. E.g. aug:CoLA:20000
    PATH[:N]   a UTF-8 text file, one example per line; a pair's two texts separated by a tab (a folder,
               a FIFO or UTF-16 text there is refused, named as such: data/files.py)
    DATA[:N]   your own data, as --data takes it (a spec .yaml/.json, a .csv, .jsonl or .parquet file, or a
               folder): the texts of its training rows, labels dropped; aug:DATA[:N] word-edited copies

With ``--data``, the task's own name stands for its training rows as a GLUE task's does (``aug:NAME:N``,
``NAME:N`` after ``--max-train-samples``).

``:N`` keeps the first N examples. A task's own name (``MNLI:20000`` while distilling MNLI with
``--max-train-samples 10000``) takes the training rows after the ones the student is trained on, so a
capped training set can be extended with unlabelled rows; without a cap there are none left.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from retort.data import tables
from retort.data.augment import augment
from retort.data.files import check_file, check_text, exists, not_utf8
from retort.data.glue import Example, Split, Task
from retort.data.spec import is_spec_file, read_spec, text_columns
from retort.data.tasks import get_task, is_task_name, load_split
from retort.errors import ConfigError, DataError


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``"MNLI:20000"`` -> ("MNLI", 20000); ``"texts.tsv"`` -> ("texts.tsv", None)."""
    name, sep, count = spec.rpartition(":")
    if sep and count.isdigit() and name:
        if int(count) <= 0:
            raise ConfigError(f"transfer set {spec!r}: the count must be positive")
        return name, int(count)
    return spec, None


TABLE_SUFFIXES = (".yaml", ".yml", ".csv", ".jsonl", ".json", ".parquet")  # read as a task's data (data/spec.py)


def load_transfer(
    task: Task,
    spec: str,
    glue_dir: str | os.PathLike | None = None,
    seed: int = 0,
    skip_own: int = 0,
    skip_bad_rows: bool = False,
    own_rows: Split | None = None,
) -> Split:
    """The unlabelled examples of one transfer spec, shaped for ``task`` (one text or a pair).

    ``seed`` seeds augmentation (``aug:``); ``skip_own`` is how many of ``task``'s own training rows the
    student trains on, left out when the spec names ``task`` itself. ``skip_bad_rows`` skips (and
    reports) malformed rows of the transfer set as it does for the task's own files. ``own_rows``: the rows
    the student trains on, which ``aug:`` of ``task`` itself copies (with ``--val-split`` they are not the
    file's first rows: the carved ones are left out, so no held-out text reaches training).
    """
    source, limit = parse_spec(spec)
    width = 2 if task.is_pair else 1
    augmented = source.startswith("aug:")
    name = source.removeprefix("aug:")
    own = not exists(source) and not task.is_glue and name == task.name  # the user's task being distilled
    if exists(name) and (tables.is_arrow_folder(name) or Path(name).is_file() and Path(name).suffix.lower() in
                         TABLE_SUFFIXES):  # fmt: skip
        rows = _table_texts(task, name, spec, None if augmented else limit)  # a data file of the user's
        return augment(rows, limit or len(rows), seed) if augmented else rows
    if own or not exists(source) and is_task_name(name):
        other = task if own else get_task(name)
        if other.is_pair != task.is_pair:
            kind = "sentence pairs" if task.is_pair else "single sentences"
            raise ConfigError(f"transfer set {spec!r}: {task.name} reads {kind}, {other.name} does not")
        skip = skip_own if other.name == task.name else 0
        if augmented:  # copies of the rows the student trains on (all of them for another task)
            mine = own_rows is not None and other.name == task.name
            rows = own_rows if mine else load_split(other, "train", glue_dir, skip_bad_rows, max_samples=skip or None)
            return augment(rows, limit or len(rows), seed)
        split = load_split(other, "train", glue_dir, skip_bad_rows, None if limit is None else skip + limit)
        examples = [Example(ex.texts, None) for ex in split.examples[skip:]]
        if not examples:
            raise DataError(
                f"transfer set {spec!r}: {task.name}'s training set has no rows after the {skip} the student "
                "trains on (cap them with --max-train-samples)"
            )
        rows = f"rows {skip + 1}-{skip + len(examples)}, " if skip else ""
        return Split(task, "transfer", examples, f"{split.source} ({rows}texts only)", list(split.skipped))
    if augmented:
        raise ConfigError(f"transfer set {spec!r}: aug: takes a GLUE task's name, the task's own, or a data file")
    path = Path(source)
    if not exists(path):
        raise DataError(f"transfer set {spec!r}: neither a GLUE task nor a file")
    check_file(path, f"transfer set {spec!r}")  # a folder, a FIFO, a symlink loop: named, never opened
    examples, skipped = [], []
    with path.open("rb") as f:
        check_text(path, f.read(65536))
        f.seek(0)
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").removeprefix("\ufeff") if lineno == 1 else raw.decode("utf-8")
            except UnicodeDecodeError as e:
                fault = f"{path}:{lineno}: {not_utf8(raw, e.start)}"
            else:
                texts = tuple(line.rstrip("\r\n").split("\t"))
                if len(texts) == width and all(t.strip() for t in texts) and "\x00" not in line:
                    examples.append(Example(texts, None))
                    if limit is not None and len(examples) == limit:
                        break
                    continue
                want = "two tab-separated texts" if width == 2 else "one text without tabs"
                fault = f"{path}:{lineno}: expected {want} for {task.name}"
            if not skip_bad_rows:
                raise DataError(fault)
            skipped.append(fault)
    if not examples:
        raise DataError(f"transfer set {spec!r}: {path} has no usable rows")
    return Split(task, "transfer", examples, str(path), skipped)


def _table_texts(task: Task, source: str, spec: str, limit: int | None) -> Split:
    """The texts of a data file or spec (as ``--data`` takes it; no label needed): its train rows' columns
    named as the task's own, else the spec's or the usual text columns (``data/spec.py``)."""
    if Path(source).suffix.lower() in (".yaml", ".yml") or source.endswith(".json") and is_spec_file(Path(source)):
        parsed, base = read_spec(source, f"transfer set {spec!r}")
        source = str(base / parsed["train"]) if "train" in parsed else source
        given = parsed.get("text")
    else:
        given = None
    fmt = tables.format_of(source)
    examples, columns = [], None
    for where, row in tables.rows(source, fmt, "train"):
        if columns is None:
            own = list(task.text_columns) if all(c in row for c in task.text_columns) else None
            columns = own or text_columns(given, list(row), source, f"transfer set {spec!r}")
            if len(columns) != len(task.text_columns):
                kind = "sentence pairs" if task.is_pair else "single sentences"
                raise ConfigError(f"transfer set {spec!r}: {task.name} reads {kind}; {source} has {columns}")
        texts = tuple("" if row.get(c) is None else str(row[c]) for c in columns)
        if any(not t.strip() for t in texts):
            raise DataError(f"{where}: empty text")
        examples.append(Example(texts, None))
        if limit is not None and len(examples) == limit:
            break
    if not examples:
        raise DataError(f"transfer set {spec!r}: {source} has no rows")
    return Split(task, "transfer", examples, f"{source} (texts only)")


def with_transfer(
    train: Split,
    specs: list[str],
    glue_dir: str | os.PathLike | None = None,
    seed: int = 0,
    skip_bad_rows: bool = False,
    held: list[Split] | None = None,
) -> tuple[Split, int, dict[str, int]]:
    """The training split followed by the transfer sets' examples, how many those are, and how many were left
    out (by spec) for having the texts of a ``held`` row (the held-out rows, the dev sets): the teacher's label
    on an evaluation input would carry that input into training (MRPC's training pairs hold 114 of STS-B's dev
    pairs). Texts match after case folding and with punctuation and spacing ignored; a pair in either order."""
    seen = {text_key(ex.texts) for split in held or [] for ex in split.examples}
    added, dropped = [], {}
    extra = [load_transfer(train.task, spec, glue_dir, seed, len(train), skip_bad_rows, train) for spec in specs]
    for spec, split in zip(specs, extra):
        kept = [ex for ex in split.examples if text_key(ex.texts) not in seen]
        if len(kept) < len(split.examples):
            dropped[spec] = len(split.examples) - len(kept)
        added += kept
    source = " + ".join([train.source, *(s.source for s in extra)])
    skipped = list(train.skipped) + [m for s in extra for m in s.skipped]
    return Split(train.task, train.name, train.examples + added, source, skipped), len(added), dropped


def text_key(texts: tuple[str, ...]) -> tuple[str, ...]:
    """What makes two inputs the same for ``with_transfer``: each text case-folded with punctuation and spacing
    ignored, a pair's two texts in either order."""
    return tuple(sorted(re.sub(r"[\W_]+", "", t.casefold()) for t in texts))
