"""Tables and charts of ``retort bench`` results (the dict ``deploy.bench.run_bench`` returns, or its JSON)."""

from __future__ import annotations

from pathlib import Path

from retort.paths import saving
from retort.report.tables import table


def rows(result: dict) -> tuple[list[str], list[list]]:
    """The bench table's headers and one row per (model, thread count, length, batch size)."""
    headers = ["model", "backend", "quant", "threads", "max len", "batch", "ms/sample p50", "p90", "p99"]
    headers += ["samples/s", "vs first", "vs first, same engine", "mean len", "peak RSS MiB", "file MiB"]
    out = []
    for r in result["runs"]:
        for lat in r["latency"]:
            ratio, same = lat.get("speedup_vs_first"), lat.get("speedup_same_engine")
            out.append(
                [
                    r["model"],
                    r["backend"],
                    r.get("quantization") or "-",
                    r["environment"]["threads"],
                    lat["max_length"],
                    lat["batch_size"],
                    f"{lat['ms_per_sample_p50']:.3f}",
                    f"{lat['ms_per_sample_p90']:.3f}",
                    f"{lat['ms_per_sample_p99']:.3f}",
                    f"{lat['samples_per_s']:.0f}",
                    (f"{ratio:.2f}x" + (" (mixed)" if lat.get("mixed") else "")) if ratio else "-",
                    f"{same:.2f}x" if same else "-",
                    f"{lat['seq_len_mean']:.0f}",
                    f"{r['peak_rss_mb']:.0f}",
                    f"{r['file_mb']:.1f}",
                ]
            )
    return headers, out


def print_bench(result: dict) -> None:
    """The bench table, the memory caps found and the CPU, on standard output."""
    headers, body = rows(result)
    print(table(headers, body))
    caps = [(r["model"], r["memory_cap"]) for r in result["runs"] if r.get("memory_cap")]
    seen = set()
    for model, cap in caps:
        if model not in seen:
            seen.add(model)
            print(f"smallest memory cap for {model}: {cap['smallest_cap_mb']} MiB ({cap['method']})")
    env = result["environment"]
    print(f"{env.get('cpu')} ({', '.join(env.get('cpu_flags', []))}), {env.get('cores')} cores")
    if result.get("rounds", 1) > 1:
        print(f"medians over {result['rounds']} rounds; 'vs first': the median of the ratios within each round")
    for line in ratio_notes(result):
        print(line)


def ratio_notes(result: dict) -> list[str]:
    """What the ratios compare: engines (a mixed ratio says so, with the same-engine one beside it) and the
    inputs timed (the task's dev rows, their mean length in tokens)."""
    from retort.deploy.bench import engine  # noqa: PLC0415  (numpy, onnxruntime)

    runs = result["runs"]
    notes = []
    if any(lat.get("mixed") for r in runs for lat in r["latency"]):
        first = next(r for r in runs if r["model"] == result["models"][0])
        notes.append(f"(mixed): that model runs on another engine than the first ({engine(first)}): the ratio mixes "
                     "the engine's gain with the model's; 'same engine' compares it with the first model listed "
                     "on its own engine ('-': none was timed; time the first model exported the same way)")  # fmt: skip
    lengths = sorted({round(lat["seq_len_mean"]) for r in runs for lat in r["latency"]})
    split = runs[0].get("split", "dev")
    notes.append(f"inputs: {result.get('task')} {split} rows as they are (mean {', '.join(map(str, lengths))} "
                 "tokens per input); other lengths time differently (--max-length with --fill)")  # fmt: skip
    return notes


def plot(result: dict, path: Path) -> None:
    """ms/sample p50 per model, one panel per (threads, max length, batch size)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    configs = sorted(
        {
            (r["environment"]["threads"], lat["max_length"], lat["batch_size"])
            for r in result["runs"]
            for lat in r["latency"]
        }
    )
    models = result["models"]
    fig, axes = plt.subplots(1, len(configs), figsize=(3.2 * len(configs) + 1, 3.8), squeeze=False)
    for ax, (t, length, bs) in zip(axes[0], configs):
        values = []
        for m in models:
            hit = [
                lat["ms_per_sample_p50"]
                for r in result["runs"]
                if r["model"] == m and r["environment"]["threads"] == t
                for lat in r["latency"]
                if lat["max_length"] == length and lat["batch_size"] == bs
            ]
            values.append(hit[0] if hit else 0.0)
        ax.barh(range(len(models)), values, color="tab:blue")
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels([_short(m) for m in models] if ax is axes[0][0] else [""] * len(models), fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{t} thr, len {length}, batch {bs}", fontsize=8)
        ax.set_xlabel("ms / sample (p50)", fontsize=8)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=6)
    fig.suptitle(f"{result['environment'].get('cpu')}", fontsize=8)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` under a temporary name, then rename; the figure is closed either way."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    try:
        with saving(path):
            fig.savefig(tmp, dpi=120)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


def _short(path: str) -> str:
    parts = Path(path).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else path


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """(ms, score) points: True where no other point is at least as fast and as good, and better in one."""
    return [not any(m2 <= m and s2 >= s and (m2 < m or s2 > s) for m2, s2 in points) for m, s in points]


def plot_frontier(frontier: dict, path: Path) -> None:
    """``retort compress``'s frontier: every candidate's held-out score against its measured latency, the
    teacher in PyTorch and in the shipped backend, the latency target and the quality floor as lines, the
    Pareto points and the shipped one marked."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    metric, t, rows = frontier["primary_metric"], frontier["teacher"], frontier["candidates"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    score = t["heldout"][metric]
    ax.scatter([t["torch_ms"]], [score], marker="s", color="black", label="teacher, PyTorch fp32")
    ax.scatter([t["backend_ms"]], [score], marker="s", facecolors="none", edgecolors="black",
               label=f"teacher, {frontier['backend']} (its score in PyTorch)")  # fmt: skip
    for r in rows:
        ms, s, on = r["measured_ms"], r["heldout"][metric], r.get("pareto")
        shipped = r["name"] == frontier.get("shipped")
        ax.scatter([ms], [s], color="tab:green" if r["meets"] else "tab:red", marker="*" if shipped else "o",
                   s=160 if shipped else 40, edgecolors="black" if on else "none", zorder=3)  # fmt: skip
        ax.annotate(r["name"] + (" (shipped)" if shipped else ""), (ms, s), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    if frontier.get("target_ms"):
        ax.axvline(frontier["target_ms"], color="tab:blue", linestyle="--", label="latency target")
    if frontier.get("floor") is not None:
        ax.axhline(frontier["floor"], color="tab:orange", linestyle=":", label="quality floor")
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter  # noqa: PLC0415

    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 0.2, 0.5, 1, 2, 5 ms in plain numbers
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"ms a call, batch 1, p50 ({frontier['threads']} threads, {frontier['cpu']})", fontsize=8)
    ax.set_ylabel(f"held-out {metric} ({frontier['heldout_rows']} training rows)", fontsize=8)
    ax.set_title(f"{frontier['task']}: candidates in {frontier['backend']} (green: meets the budget; black edge: "
                 "Pareto)", fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)
