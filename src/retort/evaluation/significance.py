"""Is method A better than method B, beyond the noise of seeds and of the dev set?

The primary test is over seeds (``seed_test``): each seed trained A and B once, so the unit of replication is
the seed. Per-seed scores are paired by seed; the paired t-test (``scipy.stats.ttest_rel``) and the exact
sign-flip permutation over the seed-level differences give p-values, the t interval and Cohen's d_z the effect
size. With n seeds the sign flips give at most 2^n orderings, so the smallest two-sided exact p-value is
2 / 2^n (0.25 with 3 seeds): three seeds cannot show a difference by permutation at all, and the t-test's
smaller values lean wholly on normality. Every page corrects its p-values for the number of comparisons it
makes (``holm``, Holm-Bonferroni) and shows the corrected value beside the raw one.

The second view (``paired_test``) is example-level and keeps the models fixed:

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
from scipy import optimize, stats


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
    two-sided permutation p-value with its floor (the least it can be with these resamples), and a 95%
    bootstrap interval of the difference."""
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
    exact = a.size < 64 and 2**a.size <= n_resamples  # scipy tries every paired swap when there are no more
    return {
        "difference": observed,
        "p_value": float(perm.pvalue),
        "p_floor": 2 / 2**a.size if exact else 2 / (n_resamples + 1),  # two-sided: twice one tail's least
        "ci95": [float(boot.confidence_interval.low), float(boot.confidence_interval.high)],
        "seeds": seeds,
        "examples": n,
        "resamples": n_resamples,
    }


def seed_test(scores_a, scores_b, confidence: float = 0.95) -> dict:
    """Seed-level paired comparison of per-seed scores (the same seeds, in the same order): the mean
    difference, its t interval, Cohen's d_z, the paired t-test's two-sided p-value (None when every seed differs
    by the same non-zero amount: the test is undefined there) and the exact sign-flip permutation p-value with
    its floor (the least it can be with this many seeds)."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"per-seed scores {a.shape} and {b.shape}: the same seeds, at least two")
    d = a - b
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    if sd > 1e-9 * max(abs(mean), 1e-9):  # (equal differences leave rounding noise, not spread)
        t = stats.ttest_rel(a, b)
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
        t_p, ci, dz = float(t.pvalue), [mean - half, mean + half], mean / sd
        dz_ci = dz_interval(float(t.statistic), n, confidence)
    else:  # every seed differs by the same amount: no spread to test against, so no t-test (None) unless none differ
        none = abs(mean) <= 1e-12  # (0.3 - (0.1 + 0.2) is not 0: rounding is no difference)
        t_p, ci, dz = (1.0 if none else None), [mean, mean], (0.0 if none else float("inf") * np.sign(mean))
        dz_ci = None
    signs = np.array(np.meshgrid(*[[1, -1]] * n)).reshape(n, -1).T  # all 2^n sign flips
    flipped = np.abs((signs * d).mean(axis=1))
    exact_p = float(np.mean(flipped >= abs(mean) - 1e-12))
    return {"difference": mean, "ci": ci, "confidence": confidence, "cohen_dz": dz, "cohen_dz_ci": dz_ci, "t_p": t_p,
            "sign_flip_p": exact_p, "sign_flip_floor": 2 / 2**n if n else 1.0, "seeds": n}  # fmt: skip


def dz_interval(t_obs: float, n: int, confidence: float = 0.95) -> list[float] | None:
    """The confidence interval of Cohen's d_z (= t / sqrt(n)) from the observed paired t with n pairs: the
    noncentralities at which ``t_obs`` sits at the upper and lower tail quantiles of the noncentral t
    distribution (``scipy.stats.nct``, inverted with ``brentq``), divided by sqrt(n). With 3 seeds it is wide.
    None past |t| 1e4 (near-equal differences), where scipy's noncentral t is no longer accurate."""
    if abs(t_obs) > 1e4:
        return None
    df, tail = n - 1, (1 - confidence) / 2

    def cdf(nc: float) -> float:  # scipy gives NaN deep in a tail (few degrees of freedom): that tail's limit
        v = float(stats.nct.cdf(t_obs, df, nc))
        return v if np.isfinite(v) else (0.0 if nc > t_obs else 1.0)

    def noncentrality(p: float) -> float:
        f = lambda nc: cdf(nc) - p  # noqa: E731 (decreasing in nc)
        lo, hi, step = t_obs - 1.0, t_obs + 1.0, 1.0
        while f(lo) < 0:
            step *= 2
            lo -= step
        while f(hi) > 0:
            step *= 2
            hi += step
        return optimize.brentq(f, lo, hi, xtol=1e-10)

    return [float(noncentrality(1 - tail) / np.sqrt(n)), float(noncentrality(tail) / np.sqrt(n))]


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: the k-th smallest of m multiplied by (m - k + 1),
    made monotone, capped at 1."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()
