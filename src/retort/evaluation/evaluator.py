"""Task evaluation: predictions from a model on encoded splits, scored with the official metrics."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from retort.data.batching import Encoded, collate, eval_order
from retort.data.glue import Task
from retort.evaluation.metrics import compute_metrics
from retort.models.outputs import forward
from retort.progress import tracked


@torch.inference_mode()
def predict(
    model: nn.Module,
    data: Encoded,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    pad_id: int = 0,
    desc: str | None = None,
) -> np.ndarray:
    """Logits for every example, in the split's order. Shape (N, C); (N, 1) for regression. With
    ``desc``, progress is reported under that name (retort/progress.py)."""
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    for idx in tracked(eval_order(data.lengths, batch_size), desc):
        batch = {k: v.to(device) for k, v in collate(data, idx, pad_id).items() if k != "labels"}
        logits = forward(model, batch).logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(data), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    model.train(was_training)
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def predictions(task: Task, logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] if task.is_regression else logits.argmax(-1)


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
        pred = predictions(task, predict(model, data, batch_size, device, pad_id, desc and f"{desc} {name}"))
        results[name] = compute_metrics(task.metrics, pred, np.asarray(data.labels))
        if keep is not None:
            keep[name] = {"pred": pred.tolist(), "gold": np.asarray(data.labels).tolist()}
    return results


def selection_score(task: Task, results: dict[str, dict[str, float]]) -> float:
    """The number that picks the best checkpoint: the primary metric, averaged over dev splits."""
    return float(np.mean([r[task.primary_metric] for r in results.values()]))
