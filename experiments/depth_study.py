"""Issue #4's depth study: softmax and linear-attention students of 1, 2, 3, 4 and 6 layers (the
teacher's width), initialised from the teacher's uniformly mapped layers and distilled on STS-B with the
same objective, epochs and seed. Reports dev Pearson and Spearman for each, and for each attention kind
the Pearson correlation between depth and dev Pearson with a bootstrap 95% interval: the dev examples
are resampled with replacement (``--bootstrap`` times), every model's Pearson is recomputed on the
resample, and the depth/score correlation is taken over the five models.

    python experiments/depth_study.py --glue-dir ../shared/data/glue --teacher runs/teachers/STS-B/model \
        --out runs/depth --epochs 3 --feature-map hedgehog

With ``--feature-map hedgehog`` a linear student spends its first ``--attention-epochs`` on attention
transfer (``--stage attention``: the learned feature maps alone, at ``--attention-lr``) and the rest of
the same ``--epochs`` budget on the full objective. Several copies can run side by side (``--threads 1``
each); they share the runs.

Writes OUT/depth.json, OUT/depth.png and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from harness import (
    Option,
    Run,
    add,
    attention_transfer,
    dev_predictions,
    distill_command,
    figure,
    parser,
    print_table,
    save_figure,
    work_through,
)

DEPTHS = Option("--depths", "student layers", type=int, default=[1, 2, 3, 4, 6], low=1)
KINDS = Option("--kinds", "attention kinds", default=["softmax", "linear"], choices=("softmax", "linear"))


def bootstrap_depth_correlation(depths, preds, gold, n: int, seed: int = 0) -> tuple[float, float, float]:
    """The Pearson correlation of depth and dev Pearson over the models, with a 95% percentile interval from
    ``n`` resamples of the dev examples (every model's Pearson recomputed on each); (point, low, high)."""
    rng = np.random.default_rng(seed)
    depths = np.asarray(depths, dtype=float)
    point = np.corrcoef(depths, [np.corrcoef(p, gold)[0, 1] for p in preds])[0, 1]
    samples = []
    for _ in range(n):
        idx = rng.integers(0, len(gold), len(gold))
        scores = [np.corrcoef(p[idx], gold[idx])[0, 1] for p in preds]
        samples.append(np.corrcoef(depths, scores)[0, 1])
    lo, hi = np.nanpercentile(samples, [2.5, 97.5])
    return float(point), float(lo), float(hi)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = parser(__doc__)
    add(p, "glue_dir", "teacher", "out", DEPTHS, KINDS, "hidden", "method", "feature_map", "epochs", "seed",
        "threads", "max_train_samples", "bootstrap", "attention_epochs", "attention_lr",
        required=["glue_dir", "teacher"], many=["depths", "kinds"],
        defaults={"out": "runs/depth", "method": "multilevel", "threads": 2, "bootstrap": 1000,
                  "attention_epochs": 1})  # fmt: skip
    args = p.parse_args(argv)
    args.attention_lr = float(args.attention_lr)  # as it always was: passed on as 0.005
    return args


def tabulate(args, done: dict) -> tuple[dict, list[list]]:
    """The record (every run's scores, the depth correlation per kind) and the rows of the first table."""
    record: dict = {"args": vars(args), "runs": {}, "correlation": {}}
    rows = []
    for kind in args.kinds:
        preds = []
        for depth in args.depths:
            run, m = done[f"{kind}-{depth}"]
            pred, gold = dev_predictions(run / "model", args.glue_dir)
            preds.append(pred)
            dev = m["best"]["dev"]
            record["runs"][run.name] = {"kind": kind, "layers": depth, "pearson": dev["pearson"],
                                        "spearman": dev["spearman"], "train_seconds": m["wall_seconds"]}  # fmt: skip
            rows.append([kind, depth, dev["pearson"], dev["spearman"], f"{m['wall_seconds'] / 60:.1f}"])
        r, lo, hi = bootstrap_depth_correlation(args.depths, preds, gold, args.bootstrap)
        record["correlation"][kind] = {"pearson_depth_vs_dev_pearson": r, "ci95": [lo, hi], "bootstrap": args.bootstrap}
    return record, rows


def main(argv: list[str] | None = None) -> int:
    """Train what is missing, write OUT/depth.json, print both tables, draw OUT/depth.png."""
    args = parse_args(argv)
    out = Path(args.out)
    jobs = {
        f"{kind}-{depth}": (lambda k=kind, d=depth: train(args, k, d)) for kind in args.kinds for depth in args.depths
    }
    done = work_through(jobs, out / ".locks")
    record, rows = tabulate(args, done)
    (out / "depth.json").write_text(json.dumps(record, indent=2))
    print_table(["attention", "layers", "dev Pearson", "dev Spearman", "train min"], rows)
    print()
    print_table(["attention", "corr(depth, dev Pearson)", "95% bootstrap CI"],
                [[k, v["pearson_depth_vs_dev_pearson"], f"[{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"]
                 for k, v in record["correlation"].items()])  # fmt: skip
    plot(record, out / "depth.png")
    return 0


def train(args, kind: str, depth: int) -> tuple[Path, dict]:
    """One student; returns its run folder and final metrics (wall time summed over its stages)."""
    fmap = "" if kind == "softmax" or args.feature_map == "elu" else f"{args.feature_map}-"
    shape = f"{depth}x{args.hidden}"
    run = Run.of(Path(args.out) / f"{kind}-{fmap}{shape}", *distill_command(
        "STS-B", args.glue_dir, args.teacher, shape, args.seed, args.threads), attention=kind, method=args.method,
        max_train_samples=args.max_train_samples)  # fmt: skip
    if kind == "softmax" or args.feature_map != "hedgehog":
        return run.out, run.also(feature_map=args.feature_map if kind == "linear" else None, epochs=args.epochs).make()
    first = run.out.with_name(run.out.name + "-attn")
    m1 = attention_transfer(list(run.args), first, args.attention_epochs, args.attention_lr)
    m2 = run.also(student_init=str(first / "model"), epochs=args.epochs - args.attention_epochs).make()
    return run.out, {**m2, "wall_seconds": m1["wall_seconds"] + m2["wall_seconds"]}


def plot(record: dict, path: Path) -> None:
    """Dev Pearson against student layers, one line per attention kind (its depth correlation in the legend)."""
    fig, ax = figure(figsize=(6, 4))
    for kind, style in (("softmax", "o-"), ("linear", "s-")):
        pts = sorted((r["layers"], r["pearson"]) for r in record["runs"].values() if r["kind"] == kind)
        if pts:
            c = record["correlation"].get(kind, {})
            label = f"{kind} (r={c.get('pearson_depth_vs_dev_pearson', float('nan')):.2f})"
            ax.plot([x for x, _ in pts], [y for _, y in pts], style, label=label)
    ax.set_xlabel("student layers")
    ax.set_ylabel("STS-B dev Pearson")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
