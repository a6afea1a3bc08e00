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
from _runs import attention_transfer, distill_command, retort, work_through

from retort.report.tables import table


def dev_predictions(model_dir: Path, glue_dir: str) -> tuple[np.ndarray, np.ndarray]:
    from retort.data.batching import encode
    from retort.data.glue import load_split
    from retort.evaluation.evaluator import predict
    from retort.models.hf import load_classifier, load_tokenizer

    cache = model_dir.parent / "dev_predictions.json"
    if cache.exists():
        d = json.loads(cache.read_text())
        return np.asarray(d["pred"]), np.asarray(d["gold"])
    split = load_split("STS-B", "dev", glue_dir)
    tok = load_tokenizer(str(model_dir))
    pred = predict(load_classifier(str(model_dir), split.task), encode(split, tok))[:, 0]
    gold = np.asarray([e.label for e in split.examples])
    cache.write_text(json.dumps({"pred": pred.tolist(), "gold": gold.tolist()}))
    return pred, gold


def bootstrap_depth_correlation(depths, preds, gold, n: int, seed: int = 0) -> tuple[float, float, float]:
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", default="runs/depth")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4, 6])
    p.add_argument("--kinds", nargs="+", default=["softmax", "linear"])
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--method", default="multilevel")
    p.add_argument("--feature-map", default="elu")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--attention-epochs", type=int, default=1, help="hedgehog: attention-transfer epochs")
    p.add_argument("--attention-lr", type=float, default=5e-3, help="hedgehog: attention-transfer learning rate")
    args = p.parse_args()
    out = Path(args.out)
    record: dict = {"args": vars(args), "runs": {}, "correlation": {}}
    rows = []
    jobs = {
        f"{kind}-{depth}": (lambda k=kind, d=depth: train(args, k, d)) for kind in args.kinds for depth in args.depths
    }
    done = work_through(jobs, out / ".locks")
    for kind in args.kinds:
        preds = []
        for depth in args.depths:
            run, m = done[f"{kind}-{depth}"]
            pred, gold = dev_predictions(run / "model", args.glue_dir)
            preds.append(pred)
            dev = m["best"]["dev"]
            record["runs"][run.name] = {
                "kind": kind,
                "layers": depth,
                "pearson": dev["pearson"],
                "spearman": dev["spearman"],
                "train_seconds": m["wall_seconds"],
            }
            rows.append([kind, depth, dev["pearson"], dev["spearman"], f"{m['wall_seconds'] / 60:.1f}"])
        r, lo, hi = bootstrap_depth_correlation(args.depths, preds, gold, args.bootstrap)
        record["correlation"][kind] = {"pearson_depth_vs_dev_pearson": r, "ci95": [lo, hi], "bootstrap": args.bootstrap}
    (out / "depth.json").write_text(json.dumps(record, indent=2))
    print(table(["attention", "layers", "dev Pearson", "dev Spearman", "train min"], rows, markdown=True))
    print()
    print(
        table(
            ["attention", "corr(depth, dev Pearson)", "95% bootstrap CI"],
            [
                [k, v["pearson_depth_vs_dev_pearson"], f"[{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"]
                for k, v in record["correlation"].items()
            ],
            markdown=True,
        )
    )
    plot(record, out / "depth.png")
    return 0


def train(args, kind: str, depth: int) -> tuple[Path, dict]:
    """One student; returns its run folder and final metrics (wall time summed over its stages)."""
    fmap = "" if kind == "softmax" or args.feature_map == "elu" else f"{args.feature_map}-"
    run = Path(args.out) / f"{kind}-{fmap}{depth}x{args.hidden}"
    cmd = distill_command("STS-B", args.glue_dir, args.teacher, f"{depth}x{args.hidden}", args.seed, args.threads)
    cmd += ["--attention", kind, "--method", args.method]
    if args.max_train_samples:
        cmd += ["--max-train-samples", str(args.max_train_samples)]
    if kind == "softmax" or args.feature_map != "hedgehog":
        extra = ["--feature-map", args.feature_map] if kind == "linear" else []
        return run, retort([*cmd, *extra, "--epochs", str(args.epochs)], run)
    first = run.with_name(run.name + "-attn")
    m1 = attention_transfer(cmd, first, args.attention_epochs, args.attention_lr)
    m2 = retort(
        [*cmd, "--student-init", str(first / "model"), "--epochs", str(args.epochs - args.attention_epochs)], run
    )
    return run, {**m2, "wall_seconds": m1["wall_seconds"] + m2["wall_seconds"]}


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
