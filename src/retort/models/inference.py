"""Plain inference: a model's logits over batches it is given, put back in the order of the rows.

The caller makes the batches (``retort.data.batching``: ``eval_order`` picks the rows of each batch,
``collate`` pads them), so this module reads no data of its own: models and data sit side by side and
never import each other. The evaluator (``evaluation/evaluator.py``) and the teacher cache
(``distill/teacher_cache.py``) both predict through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from retort.models.outputs import forward
from retort.rows import in_row_order

# (the dataset rows of a batch, the batch as tensors: input_ids, attention_mask, ... each (B, T))
Batches = Iterable[tuple[Sequence[int], dict[str, torch.Tensor]]]


@torch.inference_mode()
def predict(model: nn.Module, batches: Batches, n: int, device: torch.device | str = "cpu") -> np.ndarray:
    """Logits (n, C) float32, (n, 1) for regression, of ``model`` in eval mode over ``batches``: each
    batch's rows are written at its row indices, so any batch order gives the rows' order. A ``labels``
    entry of a batch is not passed to the model; the model's train/eval mode is restored afterwards.
    Returns a (0, 1) array when there are no batches."""
    was_training = model.training
    model.eval()

    def parts():
        for idx, batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            yield idx, forward(model, inputs).logits.float().cpu().numpy()

    try:
        return in_row_order(parts(), n)
    finally:
        model.train(was_training)
