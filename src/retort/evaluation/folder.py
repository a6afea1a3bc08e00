"""Evaluate a model folder on a split of its task (``retort eval``) and write prediction files (``retort
predict``: the GLUE leaderboard's, or label names for a task of the user's).

One evaluation path for both kinds of folder: the splits, the check that they carry labels, the metrics
and the record are written once here; only the predictor differs. A PyTorch folder (teacher, student,
DSE bi-encoder) runs through ``PyTorchPredictor`` (``evaluation/pytorch.py``, imported only for such a
folder); an export folder (``retort export``) through ``ExportPredictor``, onnxruntime without torch.
A predictor has a ``task``, a ``path`` (the folder it runs: a run folder given for ``--model`` is its
model's), a ``record`` (what the result says about its backend), ``inputs(split)``,
``logits(inputs, batch_size, desc)`` and ``threads()``. A PyTorch folder is checked before it loads
(``models/check.py``: config, weights, tokenizer, the kind of model).
"""

from __future__ import annotations

import os
import time

import numpy as np

from retort.data.glue import Example, Split, Task
from retort.data.spec import folder_task
from retort.data.tasks import get_task, load_split
from retort.deploy.runtime import OnnxModel, as_examples, embeds_only, is_export_folder, named_predictions, read_meta
from retort.errors import RetortError
from retort.evaluation.metrics import baseline, compute_metrics, predictions


def require_task_head(folder) -> None:
    """Refuse, in one line, an export with no task head (a sentence-transformers model's): it embeds sentences,
    it has no task to evaluate on and no labels to predict."""
    if is_export_folder(folder) and embeds_only(read_meta(folder)):
        raise RetortError(
            f"{folder}: a sentence-transformers export has no task head to evaluate or "
            "predict with; score its vectors with 'retort embed eval' or 'retort dse index/search'"
        )


class ExportPredictor:
    """An export folder run by onnxruntime: the texts of a split are its inputs (the export's own
    tokenizer encodes them as it predicts). ``task_name`` None takes the task the model was exported for."""

    def __init__(self, folder, task_name: str | None, max_length: int | None = None, threads: int | None = None):
        require_task_head(folder)
        self.model = OnnxModel(folder, threads, max_length)
        self.path = str(folder)
        own = folder_task(str(folder))  # a task of the user's: registered from the export record's spec
        self.task = get_task(task_name or (own.name if own else None) or self.model.task or "")
        if self.model.task and self.model.task != self.task.name:
            raise RetortError(f"{folder}: this model was exported for {self.model.task}, not {self.task.name}")
        self.record = {"backend": "onnxruntime", "quantization": self.model.meta.get("quantization")}
        self._threads = threads

    def inputs(self, split: Split) -> list[tuple[str, ...]]:
        """Each example's text or text pair, in file order."""
        return [ex.texts for ex in split.examples]

    def logits(self, examples: list[tuple[str, ...]], batch_size: int, desc: str | None) -> np.ndarray:
        """Logits (N, C), (N, 1) for regression, in the examples' order; progress under ``desc``."""
        return self.model.predict_logits(examples, batch_size, desc)

    def threads(self) -> int:
        """The intra-op threads the session was given (all cores when none were)."""
        return self._threads or os.cpu_count()


def open_predictor(model_dir: str, task_name: str | None, max_length: int | None = None, threads: int | None = None):
    """The predictor for a folder: ``ExportPredictor`` for an export (``max_length`` None: the export's
    own), else ``PyTorchPredictor`` (``max_length`` None: 128)."""
    if is_export_folder(model_dir):
        return ExportPredictor(model_dir, task_name, max_length, threads)
    from retort.evaluation.pytorch import PyTorchPredictor  # noqa: PLC0415  (torch: only for a PyTorch folder)

    return PyTorchPredictor(model_dir, task_name, max_length, threads)


def predict_inputs(
    model_dir: str, inputs, task_name: str | None = None, raw: bool = False, batch_size: int = 128,
    max_length: int | None = None, threads: int | None = None,
):  # fmt: skip
    """``retort.predict``: plain texts or pairs through a PyTorch or export folder, as label names with
    probabilities (``deploy.runtime.named_predictions``), or the logits with ``raw``."""
    predictor = open_predictor(model_dir, task_name, max_length, threads)
    task = predictor.task
    examples = as_examples(inputs, task.is_pair)
    split = Split(task, "inputs", [Example(ex, None) for ex in examples], "inputs")
    logits = predictor.logits(predictor.inputs(split), batch_size, None)
    if raw:
        return logits
    return named_predictions(logits, list(task.label_names or ("score",)), task.is_regression, task.multi_label)


def labelled_splits(
    task: Task, split: str, glue_dir: str | None, skip_bad_rows: bool = False, max_samples: int | None = None
) -> dict[str, Split]:
    """The splits ``split`` names (``dev``: every dev split of the task, e.g. MNLI's two), read from disk;
    a split without labels is refused."""
    loaded = {}
    for name in list(task.dev_splits) if split == "dev" else [split]:
        data = load_split(task, name, glue_dir, skip_bad_rows, max_samples)
        if data.examples and data.examples[0].label is None:
            raise RetortError(f"{data.source}: split {name!r} has no labels to evaluate against")
        loaded[name] = data
    return loaded


def evaluate_folder(
    model_dir: str,
    task_name: str | None,
    split: str = "dev",
    glue_dir: str | None = None,
    batch_size: int = 128,
    max_length: int | None = None,
    max_samples: int | None = None,
    skip_bad_rows: bool = False,
    threads: int | None = None,
) -> dict:
    """The official metrics of a PyTorch or export folder on ``split`` (``dev``: every dev split): the
    record ``retort eval`` prints and writes, ``{"task", "model", ["backend", "quantization",] "split",
    "results": {split: {metric: value, "score": mean}}, "examples", "seconds", "threads"}``. ``seconds``
    times prediction (an export's tokenisation included, as it happens batch by batch)."""
    predictor = open_predictor(model_dir, task_name, max_length, threads)
    task = predictor.task
    loaded = labelled_splits(task, split, glue_dir, skip_bad_rows, max_samples)
    inputs = {name: predictor.inputs(data) for name, data in loaded.items()}
    t0 = time.perf_counter()
    results, baselines = {}, {}
    for name, data in loaded.items():
        logits = predictor.logits(inputs[name], batch_size, f"eval {task.name} {name}")
        gold = np.asarray([ex.label for ex in data.examples])
        results[name] = compute_metrics(task.metrics, predictions(task, logits), gold)
        baselines[name] = baseline(task, task.metrics, gold)
    return {
        "task": task.name,
        "model": predictor.path,
        **predictor.record,
        "split": split,
        "results": results,
        "baseline": baselines,  # the majority class (classification) or the mean score (regression) of each split
        "examples": {name: len(data.examples) for name, data in loaded.items()},
        "seconds": time.perf_counter() - t0,
        "threads": predictor.threads(),
    }


# the GLUE leaderboard's file name for each task's test split
LEADERBOARD_FILES = {
    ("CoLA", "test"): "CoLA.tsv",
    ("SST-2", "test"): "SST-2.tsv",
    ("MRPC", "test"): "MRPC.tsv",
    ("STS-B", "test"): "STS-B.tsv",
    ("QQP", "test"): "QQP.tsv",
    ("MNLI", "test_matched"): "MNLI-m.tsv",
    ("MNLI", "test_mismatched"): "MNLI-mm.tsv",
    ("QNLI", "test"): "QNLI.tsv",
    ("RTE", "test"): "RTE.tsv",
    ("WNLI", "test"): "WNLI.tsv",
}


def prediction_file_name(task: Task, split: str) -> str:
    """The predictions file's name: the GLUE leaderboard's for a GLUE task (``SST-2.tsv``), else
    ``TASK-SPLIT.tsv``; a GLUE task and split the leaderboard has no file for is refused."""
    if not task.is_glue:
        return f"{task.name}-{split}.tsv"
    if (task.name, split) not in LEADERBOARD_FILES:
        names = ", ".join(sorted(f"{t} {s}" for t, s in LEADERBOARD_FILES))
        raise RetortError(f"--task {task.name} --split {split}: no leaderboard file for it (there are: {names})")
    return LEADERBOARD_FILES[(task.name, split)]


def predict_file(
    model_dir: str,
    task_name: str | None,
    split: str = "test",
    glue_dir: str | None = None,
    batch_size: int = 128,
    max_length: int | None = None,
    threads: int | None = None,
) -> tuple[str, str, int]:
    """Predictions of a PyTorch or export folder for every row of a split, as a TSV with a header ``index
    prediction`` and one line per row in file order. A GLUE task's is the leaderboard's file: classes as its TSV
    writes them (``0``/``1``, or ``entailment``/...), STS-B scores clipped to 0..5. A task of the user's gives
    label names (a multi-label row's joined by its ``label_sep``) or scores. Every row must be readable (a
    skipped row would shift the indices). ``task_name`` None: the folder's own. Returns (file name, text, rows)."""
    predictor = open_predictor(model_dir, task_name, max_length, threads)
    task = predictor.task
    name = prediction_file_name(task, split)
    loaded = load_split(task, split, glue_dir, False, None)
    logits = predictor.logits(predictor.inputs(loaded), batch_size, f"predict {task.name} {split}")
    values = predictions(task, logits)
    names = task.label_values or task.label_names
    if task.is_regression:
        low, high = task.label_range or (-np.inf, np.inf)
        lines = [f"{i}\t{min(max(float(v), low), high):.3f}" for i, v in enumerate(values)]
    elif task.multi_label:
        lines = [f"{i}\t{task.label_sep.join(n for n, on in zip(names, row) if on)}" for i, row in enumerate(values)]
    else:
        lines = [f"{i}\t{names[int(v)]}" for i, v in enumerate(values)]
    return name, "index\tprediction\n" + "\n".join(lines) + "\n", len(lines)
