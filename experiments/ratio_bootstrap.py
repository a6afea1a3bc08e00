"""How sure is "student B keeps at least X of student A's STS-B dev Pearson"? A paired bootstrap.

The dev pairs are resampled with replacement ``--bootstrap`` times; on each resample both models'
Pearson correlations with the gold scores are recomputed (the same resample for both, so what the two
get right or wrong together cancels) and their ratio taken. Prints each model's dev Pearson, the ratio,
its 95% percentile interval and the share of resamples in which the ratio reaches ``--bar``. This
measures the dev set's sampling noise only, not the training seed's.

    python experiments/ratio_bootstrap.py --glue-dir ../shared/data/glue \
        --reference runs/lin4/softmax-mnli15k-then-mnli-then-mnli-then-wiki-50k/model \
        --model runs/lin4/tf-exp-sep-e3-lr2e-4-mnli15k-then-mnli-then-mnli-then-wiki-50k/model --bar 0.95

Dev predictions are cached beside each model (RUN/dev_predictions.json, as the depth study does).
Writes --json (default: print only).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from harness import Option, add, dev_predictions, parser, print_table

REFERENCE = Option("--reference", "model folder of the reference (denominator)", metavar="DIR")
MODEL = Option("--model", "model folder of the student compared (numerator)", metavar="DIR", key="numerator")
BAR = Option("--bar", "the share of the reference's Pearson asked for", type=float, default=0.95, low=0)
SEED = Option("--seed", "seed of the resamples", type=int, default=0, key="bootstrap_seed")


def ratio_bootstrap(ref: np.ndarray, pred: np.ndarray, gold: np.ndarray, n: int, bar: float, seed: int = 0) -> dict:
    """Pearson of ``pred`` over Pearson of ``ref`` (both against ``gold``), with a paired bootstrap."""
    rng = np.random.default_rng(seed)
    point = np.corrcoef(pred, gold)[0, 1] / np.corrcoef(ref, gold)[0, 1]
    ratios = np.empty(n)
    for i in range(n):
        idx = rng.integers(0, len(gold), len(gold))
        ratios[i] = np.corrcoef(pred[idx], gold[idx])[0, 1] / np.corrcoef(ref[idx], gold[idx])[0, 1]
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return {
        "ratio": float(point),
        "ci95": [float(lo), float(hi)],
        "share_at_or_above_bar": float(np.mean(ratios >= bar)),
        "bar": bar,
        "bootstrap": n,
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> int:
    """Both models' dev predictions (cached), the paired bootstrap, the table and the JSON."""
    p = parser(__doc__)
    add(
        p,
        "glue_dir",
        REFERENCE,
        MODEL,
        BAR,
        "bootstrap",
        SEED,
        "json",
        required=["glue_dir", "reference", "numerator"],
        defaults={"bootstrap": 10000},
    )
    args = p.parse_args(argv)
    ref, gold = dev_predictions(Path(args.reference), args.glue_dir)
    pred, gold2 = dev_predictions(Path(args.model), args.glue_dir)
    if not np.array_equal(gold, gold2):
        p.error("the two models' cached dev predictions are for different dev sets")
    r = ratio_bootstrap(ref, pred, gold, args.bootstrap, args.bar, args.seed)
    r |= {
        "reference": {"model": args.reference, "pearson": float(np.corrcoef(ref, gold)[0, 1])},
        "model": {"model": args.model, "pearson": float(np.corrcoef(pred, gold)[0, 1])},
        "dev_examples": len(gold),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    headers = ["reference Pearson", "model Pearson", "ratio", "95% bootstrap CI", f"share of resamples >= {args.bar}"]
    print_table(headers,
                [[f"{r['reference']['pearson']:.4f}", f"{r['model']['pearson']:.4f}", f"{r['ratio']:.4f}",
                  f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]", f"{r['share_at_or_above_bar']:.3f}"]])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
