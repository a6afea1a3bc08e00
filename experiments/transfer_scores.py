"""What a transfer set gives the student to learn: the teacher's scores on a sample of it.

For STS-B (or any regression pair task), a transfer set teaches the student only as much of the scale
as the teacher's scores on it cover: MNLI pairs are mostly related, random Wikipedia pairs would all be
scored near 0. This prints, for the task's own training set (gold and teacher) and each transfer set,
the teacher's mean, quantiles and the share of scores in each unit bin of the 0..5 scale.

    python experiments/transfer_scores.py --glue-dir ../shared/data/glue \
        --teacher runs/teachers/STS-B/model --transfer MNLI runs/pairs/wiki-50k.tsv --sample 2000

Writes --json (default runs/transfer_scores.json).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
from harness import Option, add, parser, print_table

from retort.data.glue import Split
from retort.data.tasks import get_task, load_split
from retort.data.transfer import load_transfer

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
SAMPLE = Option("--sample", "examples drawn from each source (seeded)", type=int, default=2000, low=1)
SEED = Option("--seed", "seed of the draw", type=int, default=0, key="sample_seed")


def describe(scores: np.ndarray, bins: int = 5) -> dict:
    """Count, mean, quantiles and the share in each unit bin of 0..``bins`` (scores clipped into it)."""
    edges = np.arange(bins + 1, dtype=float)
    share = np.histogram(np.clip(scores, 0, bins), bins=edges)[0] / len(scores)
    return {
        "n": len(scores),
        "mean": float(scores.mean()),
        "quantiles": {str(q): float(np.quantile(scores, q)) for q in QUANTILES},
        "share_per_unit": [float(s) for s in share],
    }


def main(argv: list[str] | None = None) -> int:
    """The teacher's scores on a sample of the task's training rows and of each transfer set; the JSON and
    the table."""
    p = parser(__doc__)
    add(p, "glue_dir", "teacher", "task", "transfer", SAMPLE, SEED, "threads", "json", required=["glue_dir", "teacher"],
        many=["transfer"], defaults={"task": "STS-B", "transfer": ["MNLI"], "threads": 1,
                                     "json": "runs/transfer_scores.json"})  # fmt: skip
    args = p.parse_args(argv)
    import torch  # noqa: PLC0415

    from retort.data.batching import encode  # noqa: PLC0415  (torch, transformers)
    from retort.evaluation.evaluator import predict  # noqa: PLC0415
    from retort.models.hf import load_classifier, load_tokenizer  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    if not task.is_regression:
        p.error(f"{task.name} is not a regression task")
    model, tokenizer = load_classifier(args.teacher, task), load_tokenizer(args.teacher)
    own = f"{task.name} train"
    sources = {own: load_split(task, "train", args.glue_dir)}
    sources |= {spec: load_transfer(task, spec, args.glue_dir) for spec in args.transfer}
    record, rows = {}, []
    for name, split in sources.items():
        rng = random.Random(args.seed)
        picked = rng.sample(split.examples, min(args.sample, len(split)))
        sample = Split(task, split.name, picked, split.source)
        scores = predict(model, encode(sample, tokenizer), pad_id=tokenizer.pad_token_id or 0)[:, 0]
        record[name] = {"source": split.source, "size": len(split), "teacher": describe(scores)}
        if name == own:  # the task's own rows: their gold scores, then the teacher's
            record[name]["gold"] = describe(np.array([ex.label for ex in picked], dtype=float))
            rows.append(_row(f"{name} (gold)", len(split), record[name]["gold"]))
        rows.append(_row(f"{name} (teacher)" if name == own else name, len(split), record[name]["teacher"]))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps({"teacher": args.teacher, "sample": args.sample, "sources": record}, indent=2)
    )
    bins = [f"{i}-{i + 1}" for i in range(5)]
    quant = [f"q{int(q * 100)}" for q in QUANTILES]
    print_table(["source", "size", "mean", *quant, *bins], rows)
    return 0


def _row(name: str, size: int, d: dict) -> list:
    """One table row: a source's size, mean, quantiles and bin shares."""
    return [
        name,
        size,
        f"{d['mean']:.2f}",
        *(f"{v:.2f}" for v in d["quantiles"].values()),
        *(f"{s:.0%}" for s in d["share_per_unit"]),
    ]


if __name__ == "__main__":
    sys.exit(main())
