"""GLUE's official metrics as pure functions over predictions and gold labels (scikit-learn, scipy), and
the step from a model's logits to the predictions they are computed on. Nothing here needs torch: the
PyTorch and the ONNX evaluation paths score alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from retort.data.glue import Task


def accuracy(pred: Sequence, gold: Sequence) -> float:
    """The share of predictions equal to the gold label (SST-2, MNLI, QNLI, RTE, WNLI; MRPC and QQP)."""
    return float(accuracy_score(gold, pred))


def f1(pred: Sequence, gold: Sequence) -> float:
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    return float(f1_score(gold, pred, pos_label=1, average="binary", zero_division=0.0))


def mcc(pred: Sequence, gold: Sequence) -> float:
    """Matthews correlation (CoLA); 0 when either side is constant."""
    return float(matthews_corrcoef(gold, pred))


def pearson(pred: Sequence, gold: Sequence) -> float:
    """Pearson correlation of predicted and gold scores (STS-B); 0 when either side is constant."""
    if np.ptp(np.asarray(pred, dtype=float)) == 0 or np.ptp(np.asarray(gold, dtype=float)) == 0:
        return 0.0
    return float(pearsonr(pred, gold)[0])


def spearman(pred: Sequence, gold: Sequence) -> float:
    """Spearman rank correlation of predicted and gold scores (STS-B); 0 when either side is constant."""
    if np.ptp(np.asarray(pred, dtype=float)) == 0 or np.ptp(np.asarray(gold, dtype=float)) == 0:
        return 0.0
    return float(spearmanr(pred, gold)[0])


def predictions(task: Task, logits: np.ndarray) -> np.ndarray:
    """What the metrics read from logits (N, C): the score (N,) for a regression task, the multi-hot labels
    (N, C) whose logit is above 0 for a multi-label task, else the class with the highest logit (N,)."""
    if task.multi_label:  # each label whose sigmoid is above 1/2: multi-hot (N, C)
        return (logits > 0).astype(np.int64)
    return logits[:, 0] if task.is_regression else logits.argmax(-1)


def macro_f1(pred: Sequence, gold: Sequence) -> float:
    """The unweighted mean of each class's F1 (over the classes in gold or predicted)."""
    return float(f1_score(gold, pred, average="macro", zero_division=0.0))


def micro_f1(pred: Sequence, gold: Sequence) -> float:
    """F1 over all decisions pooled (equal to accuracy for single-label classification)."""
    return float(f1_score(gold, pred, average="micro", zero_division=0.0))


def weighted_f1(pred: Sequence, gold: Sequence) -> float:
    """Each class's F1 weighted by its share of gold."""
    return float(f1_score(gold, pred, average="weighted", zero_division=0.0))


def exact_match(pred: Sequence, gold: Sequence) -> float:
    """Multi-label: the share of rows whose predicted label set is exactly the gold one (subset accuracy)."""
    return float(accuracy_score(np.asarray(gold), np.asarray(pred)))


METRICS = {"accuracy": accuracy, "exact_match": exact_match, "f1": f1, "mcc": mcc, "pearson": pearson,
           "spearman": spearman, "macro_f1": macro_f1, "micro_f1": micro_f1, "weighted_f1": weighted_f1}  # fmt: skip


def baseline(task: Task, names: Sequence[str], gold: Sequence) -> dict[str, float]:
    """The scores of predicting without reading the text: the most frequent class of ``gold`` for a
    classification task (the majority-class baseline; for a multi-label task each label's majority), the mean
    of ``gold`` for a regression task (its correlations are 0 by definition). Printed beside every score."""
    gold = np.asarray(gold)
    if task.is_regression:
        const = np.full(len(gold), float(gold.mean()) if len(gold) else 0.0)
    elif task.multi_label:  # each label on where most rows have it
        const = np.broadcast_to((gold.mean(0) > 0.5).astype(np.int64), gold.shape)
    else:
        values, counts = np.unique(gold, return_counts=True)
        const = np.full(len(gold), values[counts.argmax()] if len(values) else 0)
    return compute_metrics(names, const, gold)


def compute_metrics(names: Sequence[str], pred: Sequence, gold: Sequence) -> dict[str, float]:
    """Each named metric of ``pred`` against ``gold``, plus ``score``: their mean (GLUE's task score)."""
    out = {name: METRICS[name](pred, gold) for name in names}
    out["score"] = float(np.mean([out[n] for n in names]))
    return out
