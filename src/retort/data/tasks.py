"""Tasks by name and their splits: the nine GLUE tasks (``data/glue.py``) and the user's own, resolved from a
spec by ``data/spec.py`` and registered here. ``load_split`` reads either: GLUE from its TSV folder or the
hub, a user's task from its files (``data/tables.py``), with a dev split carved from train where the spec
has none; ``carve`` is also ``--val-split``'s held-out share of train.
"""

from __future__ import annotations

import json
import os

from retort import outputs
from retort.config import task_key
from retort.data import tables
from retort.data.glue import (
    TASKS,
    Example,
    Split,
    Task,
    label_set,
    load_split_from_hub,
    parse_label,
    read_tsv,
    resolve_glue_dir,
    split_file,
)
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
    """Read one split of one task from ``glue_dir`` (or ``$GLUE_DIR``, or the hub)."""
    task = get_task(task) if isinstance(task, str) else task
    split = _canonical_split(task, split)
    root = resolve_glue_dir(glue_dir)
    if task.files:
        out = read_user_split(task, split, skip_bad_rows, max_samples)
    elif root is None:
        out = load_split_from_hub(task, split)
    else:
        out = read_tsv(task, split_file(task, root, split), split, skip_bad_rows, max_samples)
    if max_samples is not None and len(out.examples) > max_samples:
        out.examples = out.examples[:max_samples]
    return out


def _canonical_split(task: Task, split: str) -> str:
    if task.files:
        split = "dev" if split == "validation" else split
        have = [s for s, _ in task.files]
        if split not in have:
            raise DataError(f"{task.name} has no split {split!r}; it has: {', '.join(have)}")
        return split
    if split == "dev" and task.dev_splits != ("dev",):
        raise DataError(f"{task.name} has several dev splits: {', '.join(task.dev_splits)}")
    if split == "validation":
        split = "dev"
    valid = ("train", "test", *task.dev_splits, *(s.replace("dev", "test") for s in task.dev_splits))
    if split not in valid:
        raise DataError(f"{task.name} has no split {split!r}; choose one of: {', '.join(dict.fromkeys(valid))}")
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
    out = Split(task, split, [], source)
    labelled = None
    for where, row in tables.rows(source, task.data_format, "validation" if split == "dev" else split):
        if max_samples is not None and len(out.examples) >= max_samples:
            break
        missing = [c for c in task.text_columns if c not in row]
        if missing:
            raise DataError(f"{where}: no column {missing[0]!r} (its columns: {', '.join(map(str, row))})")
        texts = tuple("" if row[c] is None else str(row[c]) for c in task.text_columns)
        has_label = task.label_column in row and row[task.label_column] not in ((None,) if task.multi_label else
                                                                                (None, ""))  # fmt: skip
        if labelled is None:
            labelled = has_label or split != "test"
        if not has_label and labelled:
            fault = f"no label column {task.label_column!r}" if task.label_column not in row else "empty label"
            if not skip_bad_rows:
                raise DataError(f"{where}: {fault}")
            out.skipped.append(f"{where}: {fault}")
            continue
        if any(not t.strip() for t in texts):
            if not skip_bad_rows:
                raise DataError(f"{where}: empty text")
            out.skipped.append(f"{where}: empty text")
            continue
        label = None
        if has_label:
            raw = row[task.label_column]
            label = parse_label(task, raw) if task.is_regression else _user_class(task, raw)
            if label is None:
                what = label_set(task) if task.is_regression else f"one of the labels train has ({label_set(task)})"
                what = f"a list of the labels train has ({label_set(task)})" if task.multi_label else what
                fault = f"label {raw!r} is not {what}"
                if not skip_bad_rows:
                    raise DataError(f"{where}: {fault}")
                out.skipped.append(f"{where}: {fault}")
                continue
        out.examples.append(Example(texts, label))
    if not out.examples:
        why = f"all {len(out.skipped)} rows were bad" if out.skipped else "no rows"
        raise DataError(f"{source}: {why}")
    return out


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
    if task.files:
        return [outputs.local(source, f"the {task.name} data") for _, source in task.files if source]
    return [outputs.data_folder(resolve_glue_dir(glue_dir), task.name)]
