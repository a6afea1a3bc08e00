"""GLUE's official metrics as pure functions over predictions and gold labels (scikit-learn, scipy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def accuracy(pred: Sequence, gold: Sequence) -> float:
    return float(accuracy_score(gold, pred))


def f1(pred: Sequence, gold: Sequence) -> float:
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    return float(f1_score(gold, pred, pos_label=1, average="binary", zero_division=0.0))


def mcc(pred: Sequence, gold: Sequence) -> float:
    """Matthews correlation (CoLA); 0 when either side is constant."""
    return float(matthews_corrcoef(gold, pred))


def pearson(pred: Sequence, gold: Sequence) -> float:
    if np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0
    return float(pearsonr(pred, gold)[0])


def spearman(pred: Sequence, gold: Sequence) -> float:
    if np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0
    return float(spearmanr(pred, gold)[0])


METRICS = {"accuracy": accuracy, "f1": f1, "mcc": mcc, "pearson": pearson, "spearman": spearman}


def compute_metrics(names: Sequence[str], pred: Sequence, gold: Sequence) -> dict[str, float]:
    """Each named metric of ``pred`` against ``gold``, plus ``score``: their mean (GLUE's task score)."""
    out = {name: METRICS[name](pred, gold) for name in names}
    out["score"] = float(np.mean([out[n] for n in names]))
    return out
