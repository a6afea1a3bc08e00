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


def test_paired_test_finds_a_real_difference_and_not_a_fake_one():
    import numpy as np

    from retort.evaluation.metrics import accuracy, pearson
    from retort.evaluation.significance import paired_test

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 400)
    good = np.where(rng.random((3, 400)) < 0.85, gold, 1 - gold)  # 3 seeds, about 85% right
    bad = np.where(rng.random((3, 400)) < 0.70, gold, 1 - gold)
    twin = np.where(rng.random((3, 400)) < 0.85, gold, 1 - gold)
    real = paired_test(good, bad, gold, accuracy, n_resamples=299)
    assert real["difference"] > 0.1 and real["p_value"] < 0.01 and real["ci95"][0] > 0
    fake = paired_test(good, twin, gold, accuracy, n_resamples=299)
    assert fake["p_value"] > 0.05 and fake["ci95"][0] < 0 < fake["ci95"][1]
    scores = rng.normal(size=300)
    a = scores + rng.normal(scale=0.5, size=(2, 300))
    b = scores + rng.normal(scale=1.5, size=(2, 300))
    assert paired_test(a, b, scores, pearson, n_resamples=199)["p_value"] <= 0.01  # the smallest p with 199 resamples


def test_seed_test_matches_scipy_and_holm_known_values():
    import numpy as np
    from scipy import stats

    from retort.evaluation.significance import holm, seed_test

    a, b = [0.81, 0.79, 0.84, 0.80], [0.78, 0.79, 0.80, 0.77]
    got = seed_test(a, b)
    want = stats.ttest_rel(a, b)
    assert got["t_p"] == pytest.approx(want.pvalue) and got["difference"] == pytest.approx(0.025)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert got["ci"] == pytest.approx([ci.low, ci.high])
    d = np.subtract(a, b)
    assert got["cohen_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    lo, hi = got["cohen_dz_ci"]  # the noncentral t puts the observed t at the 97.5% and 2.5% points
    t = stats.ttest_rel(a, b).statistic
    assert stats.nct.cdf(t, 3, lo * 2) == pytest.approx(0.975) and stats.nct.cdf(t, 3, hi * 2) == pytest.approx(0.025)
    assert lo < got["cohen_dz"] < hi
    assert seed_test([1.0, 2.0, 3.0 + 1e-6], [0.0, 1.0, 2.0])["cohen_dz_ci"] is None  # t past 1e4: nct inaccurate
    assert got["sign_flip_p"] == pytest.approx(4 / 16) and got["sign_flip_floor"] == 2 / 16  # a zero difference
    assert seed_test([0.8, 0.9, 0.7], [0.7, 0.85, 0.62])["sign_flip_p"] == 0.25  # the floor with 3 seeds
    same = seed_test([0.8, 0.9, 0.7], [0.7, 0.8, 0.6])  # every seed 0.1 apart: no spread, so no t-test
    assert same["t_p"] is None and same["cohen_dz_ci"] is None and same["ci"] == pytest.approx([0.1, 0.1])
    assert seed_test([0.8, 0.9], [0.8, 0.9])["t_p"] == 1.0  # no seed differs
    assert seed_test([0.3, 0.3], [0.1 + 0.2, 0.1 + 0.2])["t_p"] == 1.0  # nor by rounding (0.3 - 0.30000000000000004)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
