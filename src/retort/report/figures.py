"""Figures of one training run: its loss curves and per-layer weights, drawn from its ``log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path


def read_log(run_dir) -> list[dict]:
    """The records of a run folder's ``log.jsonl`` (none when it has no log)."""
    path = Path(run_dir) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def plot_run(run_dir) -> list[str]:
    """Draw ``loss_curves.png`` (every loss term, unweighted and weighted) and, where the run has
    per-layer weights, ``layer_weights.png``, from the run's ``log.jsonl``. Returns the files written."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    records = [r for r in read_log(run_dir) if "loss" in r]
    if not records:
        return []
    written = []
    out = Path(run_dir)
    steps = [r["step"] for r in records]

    def series(prefix):
        keys = sorted({k for r in records for k in r if k.startswith(prefix)})
        return {k[len(prefix) :]: [r.get(k, float("nan")) for r in records] for k in keys}

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, prefix, title in ((axes[0], "loss/", "unweighted terms"), (axes[1], "weighted/", "weighted terms")):
        for name, ys in series(prefix).items():
            ax.plot(steps, ys, label=name)
        if prefix == "weighted/":
            ax.plot(steps, [r["loss"] for r in records], label="total", color="black", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"loss components: {out.name}")
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    written.append(str(out / "loss_curves.png"))

    groups = {}
    for key, ys in series("layer_weight/").items():
        term, layer = key.split("/")
        groups.setdefault(term, {})[int(layer)] = ys
    if groups:
        fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
        for ax, (term, layers) in zip(axes[0], sorted(groups.items())):
            for layer, ys in sorted(layers.items()):
                ax.plot(steps, ys, label=f"student layer {layer}" + (" (embeddings)" if layer == 0 else ""))
            ax.set_xlabel("step")
            ax.set_ylabel("weight (sum = number of layers)")
            ax.set_title(f"{term} term: per-layer weights")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "layer_weights.png", dpi=110)
        plt.close(fig)
        written.append(str(out / "layer_weights.png"))
    return written
