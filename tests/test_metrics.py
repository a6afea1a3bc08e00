import math

import pytest

from retort.evaluation.metrics import compute_metrics


def test_accuracy_and_f1_by_hand():
    pred, gold = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    # tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, f1 2/3; accuracy 3/5
    m = compute_metrics(["accuracy", "f1"], pred, gold)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["score"] == pytest.approx((0.6 + 2 / 3) / 2)


def test_matthews_by_hand():
    pred, gold = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    tp, tn, fp, fn = 2, 1, 1, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert compute_metrics(["mcc"], pred, gold)["mcc"] == pytest.approx(expected)
    assert compute_metrics(["mcc"], [1, 1, 1], [0, 1, 1])["mcc"] == 0.0


def test_pearson_spearman_by_hand():
    pred, gold = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]
    mx, my = 2.5, 2.5
    cov = sum((a - mx) * (b - my) for a, b in zip(pred, gold))
    var = sum((a - mx) ** 2 for a in pred)
    m = compute_metrics(["pearson", "spearman"], pred, gold)
    assert m["pearson"] == pytest.approx(cov / var)  # same variance on both sides
    # ranks equal the values here, so Spearman = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6*2/60
    assert m["spearman"] == pytest.approx(0.8)
    assert compute_metrics(["pearson"], [1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["pearson"] == 0.0
