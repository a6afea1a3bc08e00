"""Per-batch results put back in the order of the rows: numpy alone, so the torch-free runtime
(``deploy/runtime.py``) and the PyTorch predictor (``models/inference.py``) share one rule.

Batches are made by length (``data/batching.eval_order``, ``deploy/runtime._length_order``), so their rows
come in any order; each batch says which rows it holds and its values are written there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def in_row_order(parts: Iterable[tuple[Sequence[int], np.ndarray]], n: int) -> np.ndarray:
    """(n, C) float32 with each part's rows written at its row indices, so parts in any batch order give the
    rows' order; a (0, 1) array when there are no parts."""
    out: np.ndarray | None = None
    for idx, values in parts:
        if out is None:
            out = np.zeros((n, values.shape[1]), dtype=np.float32)
        out[idx] = values
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)
