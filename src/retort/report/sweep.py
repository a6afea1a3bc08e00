"""Figure 2 of the page (``report.page.SECTIONS``): the score of every method run at several temperatures of the
soft term, against the temperature, with its table (classification tasks only)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from retort.report import charts
from retort.report.records import WEAK_TEACHER, measured, temperature_sweep
from retort.report.render import Page
from retort.report.stats import caveats, mean_pm, task_baselines


def section(page: Page, ev, data: dict) -> None:
    """Figure 2: score (and latency, where timed) against the soft term's temperature, with its table."""
    sweep = temperature_sweep(ev.runs)
    data["temperature"] = {t: {m: {str(T): [r.primary()[2] for r in rs] for T, rs in ts.items()}
                               for m, ts in ms.items()} for t, ms in sweep.items()}  # fmt: skip
    if not sweep:
        return
    page.h(2, "Figure 2: the soft term's temperature")
    page.p("Classification tasks only: a regression task's teacher gives one number, nothing to soften.")
    rows = []
    for task, methods in sweep.items():
        first = next(iter(next(iter(methods.values())).values()))[0]
        split, primary, _ = first.primary()
        base = ev.baseline.get(f"{task}/{split}/{primary}")
        if base is not None:  # the floor every temperature stands on
            rows.append([task, "baseline (majority class)", "-", "-", f"{first.primary_label()} {100 * base:.2f}",
                         "-", "-"])  # fmt: skip
        for m, ts in methods.items():
            for T, rs in ts.items():
                split, primary, _ = rs[0].primary()
                others = [k for k in rs[0].dev[split] if k not in ("score", primary)]
                ms = [r.bench["ms_b1"] for r in rs if measured(r)]
                score = mean_pm([r.dev[split][primary] for r in rs])
                rows.append([task, m, f"{T:g}", len(rs), f"{rs[0].primary_label()} {score}",
                             "; ".join(f"{k} {mean_pm([r.dev[split][k] for r in rs])}" for k in others) or "-",
                             f"{np.mean(ms):.2f}" if ms else "-"])  # fmt: skip
    page.table(["task", "method", "T", "seeds", "primary", "other metrics", "ms b1"], rows)
    data["temperature_caveats"] = notes = sweep_caveats(sweep, ev.baseline, ev.unranked)
    if notes:
        page.p("What the data say this figure cannot show: " + " ".join(notes))
    timed = any(measured(r) for ms in sweep.values() for ts in ms.values() for rs in ts.values() for r in rs)
    page.figure(
        charts.temperature(sweep, timed, task_baselines(ev.table1, ev.columns), ev.unranked),
        "temperature.png",
        "Dev score against the soft term's temperature (mean and standard deviation over seeds); dotted: the "
        "majority class" + ("; latency at batch 1" if timed else ""),
    )


def sweep_caveats(sweep: dict, baseline: dict, unranked: list[str]) -> list[str]:
    """Sentences on what the sweep cannot show: a task whose teacher is near the majority baseline (``unranked``),
    and every run that collapsed or predicts one class (``stats.caveats`` over the sweep's runs, each named with
    its temperature). ``baseline``: ``{task/split/metric: value}`` as Table 1 shows it."""
    out = [f"{task}: its teacher is within {100 * WEAK_TEACHER:.0f} points of the majority baseline, so no "
           f"temperature can be told apart from another on {task}." for task in sweep if task in unranked]  # fmt: skip
    points: dict[str, dict[str, list]] = defaultdict(dict)  # "kd at T 4" -> task -> its runs
    for task, methods in sweep.items():
        for m, ts in methods.items():
            for T, rs in ts.items():
                points[f"{m} at T {T:g}"][task] = rs
    return out + caveats(points, baseline)
