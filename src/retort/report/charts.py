"""The evidence page's figures: each function draws one from the numbers of ``report.stats`` (or bench rows)
and returns the matplotlib figure, for ``Page.figure`` to save. matplotlib is imported when one is drawn."""

from __future__ import annotations

import numpy as np

from retort.report.records import RunRecord, measured
from retort.report.stats import mean_std


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


COLUMNS = 3  # panels a row: a 3-column grid is about 1,000 px wide at the page's 100 dpi, drawn at its size


def _grid(n: int, width: float = 3.3, height: float = 2.9):
    """A figure of ``n`` panels in rows of at most ``COLUMNS`` (unused cells hidden) and its panels in order."""
    plt = _pyplot()
    cols = max(1, min(COLUMNS, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def stability(
    students: dict,
    teacher: dict,
    tasks: list[str],
    baseline: dict[str, float | None] | None = None,
    unranked: list[str] = (),
):
    """Figure 3: a grid of one panel per task, each method's mean primary metric over seeds with the seed
    standard deviation as error bars, the teacher's mean dashed and the majority-class (regression: mean
    predictor) baseline dotted; the y axis starts at the baseline (or below the lowest bar), not wherever the
    data do. ``baseline``: task -> the baseline of its primary metric; a task in ``unranked`` (a weak teacher)
    says so in its panel's title."""
    baseline = baseline or {}
    fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks):
        labels = [k for k in students if task in students[k]]
        stats = [mean_std([r.primary()[2] for r in students[k][task]]) for k in labels]
        means, stds = [m for m, _ in stats], [s for _, s in stats]
        ax.bar(range(len(labels)), means, yerr=stds, capsize=3, color="C0")
        levels = [m - s for m, s in stats]
        if task in teacher:
            t = float(np.mean([r.primary()[2] for r in teacher[task]]))
            ax.axhline(t, color="C3", linestyle="--", linewidth=1, label="teacher")
            levels.append(t)
        base = baseline.get(task)
        if base is not None:
            ax.axhline(base, color="0.4", linestyle=":", linewidth=1.2, label="majority / mean")
            levels.append(base)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        title = f"{task}: {students[labels[0]][task][0].primary_label()}" if labels else task
        ax.set_title(title + ("\nnot ranked: teacher near the baseline" if task in unranked else ""), fontsize=9)
        if levels:
            lo = min(levels)
            ax.set_ylim(lo - 0.05 * max(abs(lo), 0.1), None)
    lines = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    if lines:  # one legend above the grid, for the lines drawn: inside a panel it covers bars
        fig.legend(list(lines.values()), list(lines), loc="outside upper center", ncols=len(lines), fontsize=8)
    return fig


def temperature(
    sweep: dict[str, dict[str, dict[float, list[RunRecord]]]],
    timed: bool,
    baseline: dict[str, float | None] | None = None,
    unranked: list[str] = (),
):
    """Figure 2: a grid of one panel per task, each method's primary metric against the temperature (mean and
    seed standard deviation), the majority-class baseline of ``baseline`` (task -> value) dotted, and a task in
    ``unranked`` (a teacher near that baseline) said in its title; with ``timed``, one more panel of batch-1
    latency against the temperature."""
    baseline = baseline or {}
    fig, axes = _grid(len(sweep) + (1 if timed else 0))
    for ax, (task, methods) in zip(axes, sweep.items()):
        if baseline.get(task) is not None:
            ax.axhline(baseline[task], color="0.4", linestyle=":", linewidth=1.2, label="majority")
        for i, (m, ts) in enumerate(methods.items()):
            xs = list(ts)
            stats = [mean_std([r.primary()[2] for r in ts[T]]) for T in xs]
            ax.errorbar(xs, [s[0] for s in stats], yerr=[s[1] for s in stats], label=m, capsize=3, marker="o",
                        color=f"C{i}")  # fmt: skip
        ax.set_xlabel("temperature T")
        ax.set_ylabel(next(iter(next(iter(methods.values())).values()))[0].primary_label())
        ax.set_title(task + ("\nnot ranked: teacher near the baseline" if task in unranked else ""), fontsize=9)
        ax.legend(fontsize=8)
    if timed:
        _latency_against_temperature(axes[-1], sweep)
    return fig


def _latency_against_temperature(ax, sweep: dict) -> None:
    """One line per (task, method) of the sweep: mean batch-1 ms/sample at each temperature that was timed."""
    for i, (key, rs_all) in enumerate(((f"{task} {m}", ts) for task, ms in sweep.items() for m, ts in ms.items())):
        pts = [(T, np.mean([r.bench["ms_b1"] for r in rs if measured(r)])) for T, rs in rs_all.items()
               if any(measured(r) for r in rs)]  # fmt: skip
        if pts:
            ax.plot(*zip(*pts), marker="o", label=key, color=f"C{i % 10}")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("ms/sample, batch 1")
    ax.set_ylim(0, None)
    ax.set_title("latency against T", fontsize=9)
    ax.legend(fontsize=7)


def latency_memory(bench: list[dict], names: list[str]):
    """Figure 4: one bar per bench row (``names``: what each row is, its backend included), batch-1 ms/sample
    on the left and peak resident memory on the right."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.32 * len(bench) + 1.6), layout="constrained")
    b1 = [next((v for (bs, _t), v in b["ms"].items() if bs == 1), float("nan")) for b in bench]
    colours = ["C1" if "int8" in n else "C0" for n in names]
    axes[0].barh(range(len(bench)), b1, color=colours)
    axes[0].set_yticks(range(len(bench)), names, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("ms/sample, batch 1 (orange: ONNX int8)")
    axes[1].barh(range(len(bench)), [b["peak_rss_mb"] or 0 for b in bench], color=colours)
    axes[1].set_yticks(range(len(bench)), [""] * len(bench))
    axes[1].invert_yaxis()
    axes[1].set_xlabel("peak resident memory, MiB")
    return fig


def loss_curves(by_label: dict[str, list[dict]]):
    """Figure 5: a grid of one panel per method, the training and held-out objective at every evaluation
    against the training step, a line per seed."""
    fig, axes = _grid(len(by_label))
    for ax, (label, seeds) in zip(axes, by_label.items()):
        for s in seeds:
            step, tr, va = zip(*s["points"])
            ax.plot(step, tr, color="C0", linewidth=1, marker=".", label="train" if s is seeds[0] else None)
            ax.plot(step, va, color="C1", linewidth=1, marker=".", label="validation" if s is seeds[0] else None)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("objective")
        ax.legend(fontsize=7)
    return fig
