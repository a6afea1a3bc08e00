"""The page's tests of each method against the reference method, per task (``report.page.SECTIONS``): over seeds
first (the paired t-test, the exact sign-flip permutation, the t interval of the difference and Cohen's d_z with
its interval), over dev examples second (the models held fixed: bootstrap interval, permutation p); every p-value
beside its Holm-Bonferroni correction over the page's comparisons (``report.stats.paired_tests``)."""

from __future__ import annotations

from retort.report.records import WEAK_TEACHER
from retort.report.render import Page
from retort.report.stats import paired_tests


def section(page: Page, ev, data: dict) -> None:
    """Each method against the reference, per task: the seed-level test first, the example-level view second,
    every p-value beside its Holm correction over the page's comparisons."""
    tests = paired_tests(ev.table1, ev.reference, ev.resamples, ev.unranked)
    data["paired_tests"] = tests
    if not tests:
        return
    page.h(2, f"Tests against {ev.reference}")
    seeds = max(len(t["seeds"]) for t in tests)
    floors = [t["example_test"]["p_floor"] for t in tests if t["example_test"]]  # 2/2^N where scipy tried every swap
    floor = min(floors) if floors else 2 / (ev.resamples + 1)
    page.p(f"Primary: over seeds (each seed trained both methods once). Per task, the mean over seeds of the primary "
           "metric's difference (method − reference, x100) with its 95% t interval, Cohen's d_z with its 95% "
           "interval (noncentral t), the paired "
           "t-test's p and the exact sign-flip permutation p over the seed-level differences. With "
           f"{seeds} seeds the sign-flip p cannot go below {2 / 2**seeds:.3f} (2 of the 2^{seeds} sign patterns), "
           "so it cannot show a difference; the t-test's smaller values rest on normality. Second view, the models "
           "held fixed: a 95% bootstrap interval over dev examples and the permutation p-value of paired example "
           f"swaps ({ev.resamples} resamples: no two-sided p below {floor:.4f}). Every p-value stands beside "
           "its Holm-Bonferroni correction over all the comparisons of its column in this table (a t-test shown "
           "n/a, where every seed differed by the same amount, is not one; scipy.stats)."
           + (f" Not tested, and not in the correction's family: {', '.join(ev.unranked)} (its teacher is within "
              f"{100 * WEAK_TEACHER:.0f} points of the majority baseline)." if ev.unranked else ""))  # fmt: skip
    rows = []

    def interval(x: dict, key: str) -> str:
        return f"{100 * x['difference']:+.2f} [{100 * x[key][0]:+.2f}, {100 * x[key][1]:+.2f}]" if x else "-"

    for t in tests:
        s, e = t["seed_test"] or {}, t["example_test"] or {}
        rows.append([t["method"], t["task"], t["label"], len(t["seeds"]),
                     interval(s, "ci"),
                     _dz(s), _t_p(s),
                     f"{s['sign_flip_p']:.3f} / {s['sign_flip_holm_p']:.3f}" if s else "-",
                     interval(e, "ci95"),
                     f"{e['p_value']:.4f} / {e['holm_p']:.4f}" if e else "-"])  # fmt: skip
    page.table(["method", "task", "metric", "seeds", "difference over seeds [95% t]", "d_z [95%]", "p t-test / Holm",
                "p sign-flip / Holm", "example view: difference [95% bootstrap]", "p permutation / Holm"],
               rows)  # fmt: skip


def _t_p(s: dict) -> str:
    """The t-test's p beside its Holm value; "n/a" where every seed differed by the same amount (no t-test)."""
    if not s:
        return "-"
    return "n/a: no spread over seeds" if s["t_p"] is None else f"{s['t_p']:.4f} / {s['holm_p']:.4f}"


def _dz(s: dict) -> str:
    """Cohen's d_z with its interval, "-" without a seed-level test."""
    if not s:
        return "-"
    ci = s["cohen_dz_ci"]
    return f"{s['cohen_dz']:.2f} " + (f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "[n/a: seeds differ by near the same]")
