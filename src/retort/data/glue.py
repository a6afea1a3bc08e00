"""Tasks: the ``Task`` record every command reads (a resolved task spec), and the nine GLUE tasks as
nine built-in specs written in the same fields a user's spec has (``data/spec.py``). Their rows are read by
one code path, ``data/tables.py`` through ``data/tasks.py``: GLUE's quirks are spec fields, not reader
branches. GLUE's TSVs are ``quoting: none`` (``csv.QUOTE_NONE``: stray quotes stay text) and may start with
a byte-order mark (MRPC); CoLA's files have no header (``columns`` names them by position; its test file,
which has one, is read by it); MNLI has two dev and two test splits and its train may be a documented subset
(a list of candidate files, the first found); STS-B's scores lie in ``range: [0, 5]``. Labels are integers
in GLUE order (``labels``; ``label_values`` where the TSV writes them otherwise), the order the Hugging Face
``nyu-mll/glue`` dataset uses, so the folder and the hub (``hub``/``hub_text``, read when no folder is
given) give the same integers.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from retort.data.files import check_file, describe, exists, refusal
from retort.errors import DataError


@dataclass(frozen=True)
class Task:
    """Everything retort needs to know about one task: a resolved spec (``Task.from_spec``), built in (GLUE)
    or the user's."""

    name: str  # canonical name ("STS-B", or the spec's name)
    text_columns: tuple[str, ...]  # the text column, or the two of a pair
    label_column: str | None  # the gold label's column
    label_names: tuple[str, ...] | None  # label names in id order; None for regression
    metrics: tuple[str, ...]  # metric names, see retort.evaluation.metrics
    primary_metric: str  # picks the best checkpoint
    files: tuple[tuple[str, str | tuple[str, ...]], ...] = ()  # (split, source); "" a carved dev split; a
    # built-in task's sources are candidate paths under the GLUE folder, the first found is read
    data_format: str = ""  # csv, tsv, jsonl, parquet, arrow or hf (data/tables.py)
    quoting: str = "csv"  # csv: RFC 4180 quotes; none: every character is text (GLUE's TSVs)
    columns: tuple[str, ...] = ()  # names of a header-less file's columns by position (CoLA)
    label_values: tuple[str, ...] | None = None  # how the files write each label, in id order, if not by name
    label_range: tuple[float, float] | None = None  # a regression label's allowed range (STS-B: 0 to 5)
    hub: str = ""  # a built-in task: its hub dataset (hf:NAME:CONFIG), read when no GLUE folder is given
    hub_text_columns: tuple[str, ...] = ()  # ... and its text columns there (labels there are class ids)
    spec: str = ""  # a user's task: its resolved spec as JSON (data/spec.py), kept in every folder made with it
    multi_label: bool = False  # each row holds a set of labels (a multi-hot label; sigmoid outputs)
    label_sep: str = ","  # multi-label: what separates the labels of a row written as text ("a,b")
    builtin: bool = False  # one of the nine GLUE tasks (known by name, read from --glue-dir or the hub)
    no_label: tuple[str, ...] = ()  # label values that mean "unlabelled" (the hub writes -1 in test splits)

    @classmethod
    def from_spec(cls, resolved: dict, builtin: bool = False) -> Task:
        """The task a resolved spec describes (``data/spec.py`` resolves a user's; ``GLUE`` holds the nine)."""
        kind = resolved["type"]
        splits = [k for k in resolved if k in ("train", "dev", "test") or k.startswith(("dev_", "test_"))]
        files = tuple((s, tuple(v) if isinstance(v, list) else v if isinstance(v, str) else "") for s, v in
                      ((s, resolved[s]) for s in splits))  # fmt: skip
        rng = resolved.get("range")
        return cls(
            resolved["name"], tuple([resolved["text"]] if isinstance(resolved["text"], str) else resolved["text"]),
            resolved["label"], None if kind == "regression" else tuple(resolved["labels"]),
            tuple(resolved["metrics"]), resolved["primary"], files=files, data_format=resolved["format"],
            quoting=resolved.get("quoting", "csv"), columns=tuple(resolved.get("columns") or ()),
            label_values=tuple(map(str, resolved["label_values"])) if resolved.get("label_values") else None,
            label_range=(float(rng[0]), float(rng[1])) if rng else None, hub=resolved.get("hub", ""),
            hub_text_columns=tuple(resolved.get("hub_text") or ()),
            spec="" if builtin else json.dumps(resolved, sort_keys=True), multi_label=kind == "multi_label",
            label_sep=resolved.get("label_sep", ","), builtin=builtin,
        )  # fmt: skip

    @property
    def is_glue(self) -> bool:
        """True for the nine built-in GLUE tasks."""
        return self.builtin

    @property
    def dev_splits(self) -> tuple[str, ...]:
        """The task's dev splits: ``dev``, or several (MNLI's ``dev_matched``, ``dev_mismatched``)."""
        return tuple(s for s, _ in self.files if s == "dev" or s.startswith("dev_"))

    @property
    def test_splits(self) -> tuple[str, ...]:
        """The task's test splits: ``test``, or several (MNLI's ``test_matched``, ``test_mismatched``)."""
        return tuple(s for s, _ in self.files if s == "test" or s.startswith("test_"))

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


def _glue(name: str, hub: str, text: list[str], label: str, labels: list[str] | None, metrics: list[str],
          hub_text: list[str], splits=("train", "dev", "test"), **fields) -> dict:  # fmt: skip
    """One built-in spec: the official layout's files (``NAME/SPLIT.tsv``) and the fields every GLUE task shares."""
    spec = {"name": name, "format": "tsv", "quoting": "none", "text": text, "label": label,
            "type": "regression" if labels is None else "classification", "metrics": metrics, "primary": metrics[0],
            "hub": f"hf:nyu-mll/glue:{hub}", "hub_text": hub_text, **fields}  # fmt: skip
    if labels is not None:
        spec["labels"] = labels
    for split in splits:
        spec.setdefault(split, [f"{name}/{split}.tsv"])
    return spec


# The nine GLUE tasks as specs, in the fields of a user's spec (data/spec.py's docstring).
GLUE_SPECS: list[dict] = [
    _glue("CoLA", "cola", ["sentence"], "label", ["unacceptable", "acceptable"], ["mcc"], ["sentence"],
          columns=["source", "label", "original_label", "sentence"], label_values=["0", "1"]),
    _glue("SST-2", "sst2", ["sentence"], "label", ["negative", "positive"], ["accuracy"], ["sentence"],
          label_values=["0", "1"]),
    _glue("MRPC", "mrpc", ["#1 String", "#2 String"], "Quality", ["not_equivalent", "equivalent"], ["accuracy", "f1"],
          ["sentence1", "sentence2"], label_values=["0", "1"], primary="f1"),
    _glue("STS-B", "stsb", ["sentence1", "sentence2"], "score", None, ["pearson", "spearman"],
          ["sentence1", "sentence2"], range=[0.0, 5.0]),
    _glue("QQP", "qqp", ["question1", "question2"], "is_duplicate", ["not_duplicate", "duplicate"], ["accuracy", "f1"],
          ["question1", "question2"], label_values=["0", "1"], primary="f1"),
    _glue("MNLI", "mnli", ["sentence1", "sentence2"], "gold_label", ["entailment", "neutral", "contradiction"],
          ["accuracy"], ["premise", "hypothesis"],
          splits=("dev_matched", "dev_mismatched", "test_matched", "test_mismatched"),
          train=["MNLI/train.tsv", "MNLI/train_subset_*.tsv"]),
    _glue("QNLI", "qnli", ["question", "sentence"], "label", ["entailment", "not_entailment"], ["accuracy"],
          ["question", "sentence"]),
    _glue("RTE", "rte", ["sentence1", "sentence2"], "label", ["entailment", "not_entailment"], ["accuracy"],
          ["sentence1", "sentence2"]),
    _glue("WNLI", "wnli", ["sentence1", "sentence2"], "label", ["not_entailment", "entailment"], ["accuracy"],
          ["sentence1", "sentence2"], label_values=["0", "1"]),
]  # fmt: skip
TASKS: dict[str, Task] = {s["name"]: Task.from_spec(s, builtin=True) for s in GLUE_SPECS}


@dataclass
class Example:
    """One example: its text or text pair and its label as the task reads it."""

    texts: tuple[str, ...]
    label: float | int | tuple[int, ...] | None  # class id, multi-hot tuple, score, or None (test split)


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
# where a built-in task's data is


def resolve_glue_dir(glue_dir: str | os.PathLike | None) -> Path | None:
    """``--glue-dir``, else ``$GLUE_DIR``, else None (meaning: the Hugging Face hub)."""
    if glue_dir:
        return Path(glue_dir)
    env = os.environ.get("GLUE_DIR")
    return Path(env) if env else None


def split_file(task: Task, glue_dir: Path, split: str) -> Path:
    """The file of one split of a built-in task under the GLUE folder: the first of its spec's candidates
    found (a pattern matching one file counts: MNLI's documented ``train_subset_*.tsv``)."""
    candidates = dict(task.files)[split]
    candidates = (candidates,) if isinstance(candidates, str) else candidates
    folder = glue_dir / Path(candidates[0]).parent
    if not folder.is_dir():
        found = describe(folder) or "a file"
        what = "no such task folder" if found == "no such file" else refusal(found, "a task folder")
        raise DataError(f"{folder}: {what} (is --glue-dir right?)")
    for candidate in candidates:
        path = glue_dir / candidate
        if "*" in candidate:
            matches = sorted(path.parent.glob(path.name))
            if len(matches) == 1:
                return check_file(matches[0])
        elif exists(path):  # a folder, a FIFO or a symlink loop there is named as such
            return check_file(path)
    raise DataError(f"{glue_dir / candidates[0]}: no such file")


# --------------------------------------------------------------------------------------------
# labels


def label_set(task: Task) -> str:
    """The labels a row of ``task`` may hold, in words (for the error that names a bad one)."""
    if task.is_regression:
        low, high = task.label_range or (None, None)
        return f"a number from {low:g} to {high:g}" if low is not None else "a finite number"
    return ", ".join(task.label_values or task.label_names or ())


def parse_label(task: Task, raw) -> float | int | None:
    """A label as the model reads it: a class id (by ``label_values`` where the files write them so, else by
    name), or a finite score within the task's range; None if bad."""
    if task.is_regression:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None
        low, high = task.label_range or (-math.inf, math.inf)
        return value if math.isfinite(value) and low <= value <= high else None
    values = task.label_values or task.label_names
    return values.index(raw) if raw in values else None
