"""The evidence page's figures: each function draws one from the numbers of ``report.stats`` (or bench rows)
and returns the matplotlib figure, for ``Page.figure`` to save. matplotlib is imported when one is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retort.report.records import RunRecord
from retort.report.stats import mean_std


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def stability(students: dict, teacher: dict, tasks: list[str]):
    """Figure 3: one panel per task, each method's mean primary metric over seeds with the seed standard
    deviation as error bars, and the teacher's mean as a dashed line."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        labels = [k for k in students if task in students[k]]
        means, stds = [], []
        for k in labels:
            m, s = mean_std([r.primary()[2] for r in students[k][task]])
            means.append(m)
            stds.append(s)
        ax.bar(range(len(labels)), means, yerr=stds, capsize=3, color="C0")
        if task in teacher:
            ax.axhline(np.mean([r.primary()[2] for r in teacher[task]]), color="C3", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{task} ({students[labels[0]][task][0].primary()[1]})" if labels else task, fontsize=9)
        if means:
            lo = min(m - s for m, s in zip(means, stds))
            ax.set_ylim(max(0.0, lo - 0.05), None)
    return fig


def temperature(sweep: dict[str, dict[str, dict[float, list[RunRecord]]]], timed: bool):
    """Figure 2: per task, each method's primary metric against the temperature (mean and seed standard
    deviation); with ``timed``, one more panel of batch-1 latency against the temperature."""
    plt = _pyplot()
    n = len(sweep) + (1 if timed else 0)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.4), squeeze=False)
    for ax, (task, methods) in zip(axes[0], sweep.items()):
        for i, (m, ts) in enumerate(methods.items()):
            xs = list(ts)
            stats = [mean_std([r.primary()[2] for r in ts[T]]) for T in xs]
            ax.errorbar(xs, [s[0] for s in stats], yerr=[s[1] for s in stats], label=m, capsize=3, marker="o",
                        color=f"C{i}")  # fmt: skip
        ax.set_xlabel("temperature T")
        ax.set_ylabel(next(iter(next(iter(methods.values())).values()))[0].primary()[1])
        ax.set_title(task)
        ax.legend(fontsize=8)
    if timed:
        _latency_against_temperature(axes[0][-1], sweep)
    return fig


def _latency_against_temperature(ax, sweep: dict) -> None:
    """One line per (task, method) of the sweep: mean batch-1 ms/sample at each temperature that was timed."""
    for i, (key, rs_all) in enumerate(((f"{task} {m}", ts) for task, ms in sweep.items() for m, ts in ms.items())):
        pts = [(T, np.mean([r.bench["ms_b1"] for r in rs if r.bench])) for T, rs in rs_all.items()
               if any(r.bench for r in rs)]  # fmt: skip
        if pts:
            ax.plot(*zip(*pts), marker="o", label=key, color=f"C{i % 10}")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("ms/sample, batch 1")
    ax.set_ylim(0, None)
    ax.set_title("latency against T")
    ax.legend(fontsize=7)


def latency_memory(bench: list[dict]):
    """Figure 4: one bar per bench row, batch-1 ms/sample on the left and peak resident memory on the right."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(bench) + 2))
    names = [f"{Path(b['model']).parent.name}/{Path(b['model']).name} {b['backend']}" for b in bench]
    b1 = [next((v for (bs, _t), v in b["ms"].items() if bs == 1), float("nan")) for b in bench]
    axes[0].barh(range(len(bench)), b1, color="C0")
    axes[0].set_yticks(range(len(bench)), names, fontsize=7)
    axes[0].set_xlabel("ms/sample, batch 1")
    axes[1].barh(range(len(bench)), [b["peak_rss_mb"] or 0 for b in bench], color="C1")
    axes[1].set_yticks(range(len(bench)), [""] * len(bench))
    axes[1].set_xlabel("peak resident memory, MiB")
    return fig


def loss_curves(by_label: dict[str, list[dict]]):
    """Figure 5: one panel per method, the training and held-out objective per epoch, a line per seed."""
    plt = _pyplot()
    n = len(by_label)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.2), squeeze=False)
    for ax, (label, seeds) in zip(axes[0], by_label.items()):
        for s in seeds:
            ep, tr, va = zip(*s["points"])
            ax.plot(ep, tr, color="C0", linewidth=1, marker=".", label="train" if s is seeds[0] else None)
            ax.plot(ep, va, color="C1", linewidth=1, marker=".", label="validation" if s is seeds[0] else None)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("objective")
    return fig
