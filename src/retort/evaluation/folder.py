"""Evaluate a saved model folder on a GLUE split (the ``retort eval`` command)."""

from __future__ import annotations

import time

import torch

from retort.data.batching import encode, encode_pairs
from retort.data.glue import get_task, load_split
from retort.errors import RetortError
from retort.evaluation.evaluator import evaluate
from retort.models.biencoder import BiEncoder
from retort.models.hf import check_finite, load_classifier, load_tokenizer


def evaluate_folder(
    model_dir: str,
    task_name: str,
    split: str = "dev",
    glue_dir: str | None = None,
    batch_size: int = 128,
    max_length: int = 128,
    max_samples: int | None = None,
    skip_bad_rows: bool = False,
    threads: int | None = None,
) -> dict:
    task = get_task(task_name)
    if threads:
        torch.set_num_threads(threads)
    splits = list(task.dev_splits) if split == "dev" else [split]
    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir, task)
    check_finite(model, model_dir)
    data = {}
    for s in splits:
        loaded = load_split(task, s, glue_dir, skip_bad_rows, max_samples)
        if loaded.examples and loaded.examples[0].label is None:
            raise RetortError(f"{loaded.source}: split {s!r} has no labels to evaluate against")
        data[s] = (encode_pairs if isinstance(model, BiEncoder) else encode)(loaded, tokenizer, max_length)
    t0 = time.perf_counter()
    results = evaluate(model, task, data, batch_size, "cpu", tokenizer.pad_token_id or 0, f"eval {task.name}")
    return {
        "task": task.name,
        "model": str(model_dir),
        "split": split,
        "results": results,
        "examples": {k: len(v) for k, v in data.items()},
        "seconds": time.perf_counter() - t0,
        "threads": torch.get_num_threads(),
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


def predict_file(
    model_dir: str,
    task_name: str,
    split: str = "test",
    glue_dir: str | None = None,
    batch_size: int = 128,
    max_length: int = 128,
    threads: int | None = None,
) -> tuple[str, str, int]:
    """Predictions for every row of a split in the GLUE leaderboard's format: a header ``index
    prediction`` and one line per row in file order; classes as the task's TSV writes them (``0``/``1``,
    or ``entailment``/``not_entailment``/...), STS-B scores clipped to 0..5. Every row must be readable
    (a skipped row would shift the indices). Returns (official file name, text, rows)."""
    from retort.evaluation.evaluator import predict, predictions  # noqa: PLC0415

    task = get_task(task_name)
    if (task.name, split) not in LEADERBOARD_FILES:
        names = ", ".join(sorted(f"{t} {s}" for t, s in LEADERBOARD_FILES))
        raise RetortError(f"--task {task.name} --split {split}: no leaderboard file for it (there are: {names})")
    if threads:
        torch.set_num_threads(threads)
    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir, task)
    check_finite(model, model_dir)
    loaded = load_split(task, split, glue_dir, False, None)
    data = (encode_pairs if isinstance(model, BiEncoder) else encode)(loaded, tokenizer, max_length)
    logits = predict(model, data, batch_size, "cpu", tokenizer.pad_token_id or 0, f"predict {task.name} {split}")
    values = predictions(task, logits)
    if task.is_regression:
        lines = [f"{i}\t{min(max(float(v), 0.0), 5.0):.3f}" for i, v in enumerate(values)]
    else:
        names = task.label_values or task.label_names
        lines = [f"{i}\t{names[int(v)]}" for i, v in enumerate(values)]
    return LEADERBOARD_FILES[(task.name, split)], "index\tprediction\n" + "\n".join(lines) + "\n", len(lines)
