"""Task evaluation of a PyTorch model on encoded splits, scored with the official metrics: what the trainer
runs on dev at every evaluation, and what ``retort eval`` and ``retort predict`` run on a model folder.

The batches are made here from the data (longest first, each padded to its own longest member) and handed
to ``retort.models.inference.predict``, which puts the logits back in the split's order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from retort.data.batching import Encoded, collate, eval_order
from retort.data.glue import Task
from retort.evaluation.metrics import compute_metrics, predictions
from retort.models import inference
from retort.progress import tracked


def eval_batches(
    data: Encoded, batch_size: int = 128, pad_id: int = 0, desc: str | None = None
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(row indices, padded batch) for every batch of an evaluation pass over ``data``, longest rows
    first (``eval_order``); with ``desc``, progress is reported under that name (retort/progress.py)."""
    for idx in tracked(eval_order(data.lengths, batch_size), desc):
        yield idx, collate(data, idx, pad_id)


def predict_split(
    model: nn.Module,
    data: Encoded,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    pad_id: int = 0,
    desc: str | None = None,
) -> np.ndarray:
    """Logits for every example of ``data``, in the split's order. Shape (N, C); (N, 1) for regression.
    With ``desc``, progress is reported under that name."""
    return inference.predict(model, eval_batches(data, batch_size, pad_id, desc), len(data), device)


predict = predict_split  # the name the experiments scripts import (experiments/transfer_scores.py, depth_study.py)


def evaluate(
    model: nn.Module,
    task: Task,
    splits: dict[str, Encoded],
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    pad_id: int = 0,
    desc: str | None = None,
    keep: dict | None = None,
) -> dict[str, dict[str, float]]:
    """``{split: {metric: value, ..., "score": mean}}`` for each labelled split. ``keep``, when given,
    receives ``{split: {"pred": [...], "gold": [...]}}`` (the per-example evidence of paired tests)."""
    results = {}
    for name, data in splits.items():
        pred = predictions(task, predict_split(model, data, batch_size, device, pad_id, desc and f"{desc} {name}"))
        results[name] = compute_metrics(task.metrics, pred, np.asarray(data.labels))
        if keep is not None:
            keep[name] = {"pred": pred.tolist(), "gold": np.asarray(data.labels).tolist()}
    return results


def selection_score(task: Task, results: dict[str, dict[str, float]]) -> float:
    """The number that picks the best checkpoint: the primary metric, averaged over dev splits."""
    return float(np.mean([r[task.primary_metric] for r in results.values()]))
