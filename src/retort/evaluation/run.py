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
