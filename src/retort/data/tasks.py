"""Tasks by name and their splits: the nine built-in GLUE specs (``data/glue.py``) and the user's own, resolved
from a spec by ``data/spec.py`` and registered here. ``load_split`` reads both by one code path: rows from
``data/tables.py`` (a built-in task's from its GLUE folder, or from the hub when none is given), each checked
and turned into an ``Example`` here, with a dev split carved from train where a user's spec has none;
``carve`` is also ``--val-split``'s held-out share of train.
"""

from __future__ import annotations

import dataclasses
import json
import os

from retort import outputs
from retort.config import task_key
from retort.data import tables
from retort.data.glue import TASKS, Example, Split, Task, label_set, parse_label, resolve_glue_dir, split_file
from retort.errors import ConfigError, DataError

_ALIASES = {task_key(k): k for k in TASKS}
_USER_TASKS: dict[str, Task] = {}  # the user's tasks this process has resolved (data/spec.py), by name


def register_task(task: Task) -> Task:
    """Make a user's task known by its name to ``get_task`` in this process; returns it."""
    _USER_TASKS[task.name] = task
    return task


def is_task_name(name: str) -> bool:
    """Whether ``name`` spells a GLUE task (any spelling ``get_task`` accepts)."""
    return task_key(name) in _ALIASES


def get_task(name: str) -> Task:
    """Look a task up by any common spelling: ``sts-b``, ``stsb``, ``STS-B``, ``sst2``."""
    if isinstance(name, Task):
        return name
    if name in _USER_TASKS:
        return _USER_TASKS[name]
    key = task_key(name)
    if key not in _ALIASES:
        raise DataError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}, or give your data with --data")
    return TASKS[_ALIASES[key]]


def load_split(
    task: Task | str,
    split: str = "train",
    glue_dir: str | os.PathLike | None = None,
    skip_bad_rows: bool = False,
    max_samples: int | None = None,
) -> Split:
    """Read one split of one task: a user's from its files; a built-in one from ``glue_dir`` (or ``$GLUE_DIR``,
    or the hub)."""
    task = get_task(task) if isinstance(task, str) else task
    split = _canonical_split(task, split)
    if not task.builtin:
        out = read_user_split(task, split, skip_bad_rows, max_samples)
        out.examples = out.examples[:max_samples]  # a carved split is read whole to carve, then capped
        return out
    root = resolve_glue_dir(glue_dir)
    if root is not None:
        return _read_rows(task, split, str(split_file(task, root, split)), skip_bad_rows, max_samples)
    hub = dataclasses.replace(
        task, text_columns=task.hub_text_columns, label_column="label", data_format="hf", no_label=("-1",),
        label_values=None if task.is_regression else tuple(str(i) for i in range(task.num_labels)),
    )  # fmt: skip
    try:  # the hub's GLUE: the same columns under other names, labels as class ids, -1 in the test splits
        return _read_rows(hub, split, task.hub, skip_bad_rows, max_samples)
    except DataError as e:
        raise DataError(f"no GLUE folder given (--glue-dir or $GLUE_DIR), and from the hub: {e}") from None


def _canonical_split(task: Task, split: str) -> str:
    split = "dev" if split == "validation" else split
    have = [s for s, _ in task.files]
    if split == "dev" and "dev" not in have and len(task.dev_splits) > 1:
        raise DataError(f"{task.name} has several dev splits: {', '.join(task.dev_splits)}")
    if split not in have:
        raise DataError(f"{task.name} has no split {split!r}; it has: {', '.join(have)}")
    return split


def carve(split: Split, size: float, seed: int) -> tuple[Split, Split, list[int]]:
    """A held-out selection split carved from ``split``: ``size`` rows (>= 1) or that fraction of them,
    drawn with ``seed``; for classification each label keeps its share (largest remainders). Returns
    (the rest, the carved rows, their 0-based positions in ``split``, ascending); both keep file order."""
    import numpy as np  # noqa: PLC0415

    n = len(split.examples)
    want = int(size) if size >= 1 else round(size * n)
    if not 1 <= want < n:
        raise ConfigError(f"--val-split {size:g}: {want} of {n} training rows; keep at least one on each side")
    rng = np.random.default_rng(seed)
    if split.task.is_regression:
        chosen = rng.permutation(n)[:want].tolist()
    else:
        groups: dict = {}
        for i, ex in enumerate(split.examples):
            groups.setdefault(ex.label, []).append(i)
        labels = sorted(groups, key=str)
        exact = [want * len(groups[y]) / n for y in labels]
        counts = [int(x) for x in exact]
        for j in sorted(range(len(labels)), key=lambda j: counts[j] - exact[j])[: want - sum(counts)]:
            counts[j] += 1
        chosen = [i for y, c in zip(labels, counts) for i in rng.permutation(groups[y])[:c].tolist()]
    keep = set(chosen)
    val = Split(split.task, "val", [split.examples[i] for i in sorted(keep)], f"{split.source} (--val-split)")
    rest = Split(split.task, split.name, [ex for i, ex in enumerate(split.examples) if i not in keep], split.source,
                 split.skipped)  # fmt: skip
    return rest, val, sorted(keep)


# --------------------------------------------------------------------------------------------
# a user's task (data/spec.py resolved it): rows from data/tables.py, a dev split carved from train


def read_user_split(task: Task, split: str, skip_bad_rows: bool = False, max_samples: int | None = None) -> Split:
    """One split of a user's task. A carved dev split (no file of its own) is the spec's seeded, stratified
    share of train, and train is then the rest: both are read whole to carve; other splits stop at
    ``max_samples``."""
    source = dict(task.files)[split]
    carved = json.loads(task.spec).get("dev") if task.spec else None
    if isinstance(carved, dict) and split in ("train", "dev"):
        whole = _read_rows(task, "train", dict(task.files)["train"], skip_bad_rows, None)
        rest, val, _ = carve(whole, carved["size"], carved["seed"])
        out = rest if split == "train" else Split(task, "dev", val.examples, f"{whole.source} (dev carved, seed "
                                                                             f"{carved['seed']})")  # fmt: skip
        out.skipped = whole.skipped if split == "train" else []
        return out
    return _read_rows(task, split, source, skip_bad_rows, max_samples)


def _read_rows(task: Task, split: str, source: str, skip_bad_rows: bool, max_samples: int | None) -> Split:
    """The examples of one split read from ``source``: each row's texts and label checked; a bad row stops
    the run with ``file:line: fault``, or with ``skip_bad_rows`` is skipped and counted. With ``max_samples``
    reading stops once that many examples are in. A test split may have no labels at all."""
    out = Split(task, split, [], source)
    labelled = None
    hub_split = split.replace("dev", "validation")  # the hub's names: validation, validation_matched, ...

    def bad(where: str, fault: str) -> None:
        if not skip_bad_rows:
            raise DataError(f"{where}: {fault}")
        out.skipped.append(f"{where}: {fault}")

    rows = tables.rows(source, task.data_format, hub_split, task.quoting, task.columns)
    for where, row in rows:
        if max_samples is not None and len(out.examples) >= max_samples:
            break
        if isinstance(row, tables.Fault):
            bad(where, row)
            continue
        missing = [c for c in task.text_columns if c not in row]
        if missing:
            raise DataError(_no_column(task, source, where, f"no column {missing[0]!r}", row))
        texts = tuple("" if row[c] is None else str(row[c]) for c in task.text_columns)
        raw = row.get(task.label_column)
        unlabelled = raw is None or (not task.multi_label and label_text(raw) in ("", *task.no_label))
        if labelled is None:  # a test split whose first row has no label has none
            labelled = not (split.startswith("test") and unlabelled)
            if labelled and task.label_column not in row:
                raise DataError(_no_column(task, source, where, f"no label column {task.label_column!r}", row))
        if labelled and unlabelled and label_text(raw) not in task.no_label:
            bad(where, "empty label")
            continue
        if any(not t.strip() for t in texts):
            bad(where, "empty text")
            continue
        label = None
        if labelled and not unlabelled:  # (a row the hub marks unlabelled has no label)
            label = _label(task, raw)
            if label is None:
                bad(where, f"label {raw!r} is not {_allowed(task)}")
                continue
        out.examples.append(Example(texts, label))
    if not out.examples:
        header = " (header only?)" if task.data_format in ("csv", "tsv") else ""
        why = f"all {len(out.skipped)} rows were bad" if out.skipped else f"no data rows{header}"
        raise DataError(f"{source}: {why}")
    return out


def _no_column(task: Task, source: str, where: str, what: str, row: dict) -> str:
    """A column the task reads is not in the data: the header's fault (line 1) in a CSV or TSV, else the row's."""
    if task.data_format in ("csv", "tsv"):
        return f"{source}:1: {what} in the header (its columns: {', '.join(map(str, row))})"
    return f"{where}: {what} (its columns: {', '.join(map(str, row))})"


def _label(task: Task, raw) -> float | int | tuple[int, ...] | None:
    """A row's label as the model reads it (a score, a class id, a multi-hot tuple); None when it is not one."""
    if task.is_regression:
        return parse_label(task, raw)
    if task.multi_label or not task.label_values:
        return _user_class(task, raw)
    return parse_label(task, label_text(raw))


def _allowed(task: Task) -> str:
    """What a row's label may be, in words: a built-in task's declared labels, else the ones train has."""
    if task.is_regression or task.builtin:
        return label_set(task) if task.is_regression else f"one of {label_set(task)}"
    if task.multi_label:
        return f"a list of the labels train has ({label_set(task)})"
    return f"one of the labels train has ({label_set(task)})"


def _user_class(task: Task, raw) -> int | tuple[int, ...] | None:
    """A row's label as the model reads it: a class id, or for a multi-label task a multi-hot tuple (one 0/1
    per label name); None when it names a label train does not have."""
    names = task.label_names or ()
    if task.multi_label:
        items = label_list(raw, task.label_sep)
        if items is None or any(x not in names for x in items):
            return None
        return tuple(int(n in items) for n in names)
    name = label_text(raw)
    return names.index(name) if name in names else None


def label_text(value) -> str:
    """A label value as its name: ``1``, ``1.0`` and ``"1"`` alike for whole numbers."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() if value is not None else ""


def label_list(raw, sep: str = ",") -> list[str] | None:
    """A multi-label row's label names: from a list, a JSON list written as text (``["a", "b"]``), or names
    joined by ``sep`` (``a,b``); None where ``raw`` is none of these."""
    if isinstance(raw, str):
        text = raw.strip()
        if not text.startswith("["):
            return [p.strip() for p in text.split(sep) if p.strip()]
        try:
            raw = json.loads(text)
        except ValueError:
            return None
    if hasattr(raw, "tolist"):  # a numpy array
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)) or any(isinstance(x, (bool, list, dict)) or x is None for x in raw):
        return None
    return [label_text(x) for x in raw]


def task_inputs(task: Task, glue_dir) -> list:
    """What a command reading ``task`` reads from disk, as inputs for the output rule (``retort.outputs``):
    a GLUE task's folder, or a user's task's files."""
    if not task.builtin:
        return [outputs.local(source, f"the {task.name} data") for _, source in task.files if source]
    return [outputs.data_folder(resolve_glue_dir(glue_dir), task.name)]
