"""Is method A better than method B, beyond the noise of seeds and of the dev set? A paired test.

Both methods were run with the same seeds and predicted the same dev examples. The statistic is the
mean over seeds of metric(A's predictions) - metric(B's predictions), each metric computed over the whole
dev set (so F1, MCC and correlations work, not only per-example accuracy). Under the null hypothesis that
the two methods are exchangeable, swapping A's and B's prediction for any (seed, example) pair leaves the
statistic's distribution unchanged; ``scipy.stats.permutation_test`` with ``permutation_type="samples"``
does exactly those paired swaps and gives the p-value. The interval is a percentile bootstrap over dev
examples (``scipy.stats.bootstrap`` resampling example indices, so A and B, and every seed of an
example, stay paired).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats


def paired_test(
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    gold: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict:
    """``pred_a``, ``pred_b``: (seeds, examples) predictions of the two methods (the same seeds, the same
    examples in the same order); ``gold`` (examples,). Returns the mean difference over seeds, the
    two-sided permutation p-value, and a 95% bootstrap interval of the difference."""
    a, b, gold = np.asarray(pred_a), np.asarray(pred_b), np.asarray(gold)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != len(gold):
        raise ValueError(f"predictions {a.shape} and {b.shape} must both be (seeds, {len(gold)} examples)")
    seeds, n = a.shape

    def diff(x: np.ndarray, y: np.ndarray, idx: np.ndarray | None = None) -> float:
        x, y = x.reshape(seeds, -1), y.reshape(seeds, -1)
        g = gold if idx is None else gold[idx]
        return float(np.mean([metric(x[s], g) - metric(y[s], g) for s in range(seeds)]))

    observed = diff(a, b)
    perm = stats.permutation_test(
        (a.ravel(), b.ravel()), diff, permutation_type="samples", n_resamples=n_resamples, vectorized=False,
        alternative="two-sided", random_state=seed,
    )  # fmt: skip
    # bootstrap over examples: resample example indices, keep every seed of an example together
    boot = stats.bootstrap(
        (np.arange(n),), lambda idx: diff(a[:, idx].ravel(), b[:, idx].ravel(), idx),
        n_resamples=min(n_resamples, 2999), vectorized=False, method="percentile", random_state=seed,
    )  # fmt: skip
    return {
        "difference": observed,
        "p_value": float(perm.pvalue),
        "ci95": [float(boot.confidence_interval.low), float(boot.confidence_interval.high)],
        "seeds": seeds,
        "examples": n,
        "resamples": n_resamples,
    }
