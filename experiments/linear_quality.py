"""Issue #4's quality comparison: a linear-attention student against the softmax student of the same
shape on STS-B (short inputs), both initialised from the teacher's layers and distilled with the
multi-level objective for the same number of epochs, optionally on the same transfer set.

The linear student is made in two steps (see README, "Linear-attention students"):

1. attention transfer: the hedgehog feature maps alone (exp form, separate query and key maps),
   teacher-forced, ``--attention-epochs`` at ``--attention-lr``;
2. the full objective for ``--epochs`` (as many as the softmax student gets), at each of ``--lrs``.

    python experiments/linear_quality.py --glue-dir ../shared/data/glue \
        --teacher runs/teachers/STS-B/model --out runs/lin4 --lrs 2e-4 4e-4 --transfer MNLI:15000

Further cycles (``--then SPEC ...``) go on from each run's kept model, both students alike; the best
linear student so far (issue #4, docs/results.md) comes from

    retort mine-pairs --corpus ../shared/data/corpus --out runs/pairs/wiki-50k.tsv --pairs 50000 --pool 100000
    python experiments/linear_quality.py --glue-dir ../shared/data/glue --teacher runs/teachers/STS-B/model \
        --out runs/lin4 --lrs 2e-4 --transfer MNLI:15000 --then MNLI MNLI runs/pairs/wiki-50k.tsv --then-epochs 1

Runs are shared between copies of the script started side by side (``--threads 1`` each) and resumed
when killed. Writes OUT/linear_quality.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _runs import distill_command, retort, transfer_suffix, work_through

from retort.report.tables import table


def summary(metrics: dict) -> dict:
    evals = [e["results"]["dev"]["pearson"] for e in metrics.get("evals", [])]
    best = metrics["best"]["dev"]
    return {
        "pearson": best["pearson"],
        "spearman": best["spearman"],
        "per_epoch_pearson": evals,
        "train_min": metrics["train_seconds"] / 60,
        "train_examples": metrics["train_examples"],
        "transfer_examples": metrics.get("transfer_examples", 0),
        "threads": metrics["threads"],
    }


def continued(cycles: list[dict]) -> dict:
    """One record for a run and the cycles that went on from it: every epoch's dev Pearson, the best
    epoch's scores (``best_cycle`` counts from 1), the cycles' minutes added up."""
    best = max(range(len(cycles)), key=lambda i: cycles[i]["pearson"])
    return {
        **cycles[-1],
        "pearson": cycles[best]["pearson"],
        "spearman": cycles[best]["spearman"],
        "per_epoch_pearson": [v for c in cycles for v in c["per_epoch_pearson"]],
        "train_min": sum(c["train_min"] for c in cycles),
        "best_cycle": best + 1,
    }


def cycle_name(before: str, spec: str | None) -> str:
    """The run folder of the cycle that goes on from run ``before`` on STS-B + ``spec``."""
    return f"{before}-then{transfer_suffix(spec) or '-stsb'}"


def data_name(spec: str | None) -> str:
    return f"STS-B + {spec}" if spec else "STS-B"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", default="runs/lin4")
    p.add_argument("--student", default="4x384")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--softmax-lr", default="5e-5")
    p.add_argument("--lrs", nargs="+", default=["2e-4", "4e-4"], help="learning rates of the linear student")
    p.add_argument("--attention-epochs", type=int, default=2)
    p.add_argument("--attention-lr", default="5e-3")
    p.add_argument("--transfer", nargs="*", default=[None], help="transfer sets to compare (none = task data)")
    p.add_argument(
        "--then",
        nargs="*",
        default=[],
        metavar="SPEC",
        help="further cycles for every run, one per SPEC, each going on from the model the one before kept, "
        "on STS-B + SPEC ('' = STS-B alone)",
    )
    p.add_argument("--then-epochs", type=int, help="epochs of each further cycle (default: --epochs)")
    p.add_argument(
        "--then-lr-scale", type=float, default=0.5, help="each further cycle's lr = this x the lr of the cycle before"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    out = Path(args.out)
    base = distill_command("STS-B", args.glue_dir, args.teacher, args.student, args.seed, args.threads)
    base += ["--method", "multilevel"]
    # the default learning rate is left out, as the depth study does, so its softmax run is this one
    softmax_lr = ["--lr", args.softmax_lr] if args.softmax_lr != "5e-5" else []
    attn_dir = out / "tf-exp-sep-attn"
    attn_cmd = [*base, "--attention", "linear", "--feature-map", "hedgehog", "--hedgehog-act", "exp"]
    attn_cmd += ["--hedgehog-qk", "separate", "--stage", "attention", "--teacher-forced"]
    attn_cmd += ["--epochs", str(args.attention_epochs), "--lr", args.attention_lr]
    transfers = [t or None for t in args.transfer] or [None]

    def extra(spec):
        return ["--transfer", spec] if spec else []

    then_epochs = str(args.then_epochs or args.epochs)
    jobs, rows, chains, first_lr = {}, [], {}, {}
    for spec in transfers:
        name = f"softmax{transfer_suffix(spec)}"
        cmd = [*base, "--attention", "softmax", "--epochs", str(args.epochs), *softmax_lr, *extra(spec)]
        jobs[name] = lambda cmd=cmd, name=name: retort(cmd, out / name)
        rows.append(("softmax", spec, name))
        first_lr[name] = ("softmax", args.softmax_lr)
        for lr in args.lrs:
            name = f"tf-exp-sep-e{args.epochs}-lr{lr}{transfer_suffix(spec)}"
            cmd = [*base, "--attention", "linear", "--student-init", str(attn_dir / "model")]
            cmd += ["--epochs", str(args.epochs), "--lr", lr, *extra(spec)]

            def job(cmd=cmd, name=name):
                retort(attn_cmd, attn_dir)
                return retort(cmd, out / name)

            jobs[name] = job
            rows.append((f"linear hedgehog, lr {lr}", spec, name))
            first_lr[name] = ("linear", lr)
    # further cycles, one after the other: each goes on from the model the cycle before kept, at a
    # learning rate scaled once more, on STS-B + its SPEC
    for label, spec, first in list(rows):
        kind, lr = first_lr[first]
        names, specs = [first], [spec]
        for i, then in enumerate(t or None for t in args.then):
            name = cycle_name(names[-1], then)
            lr2 = f"{float(lr) * args.then_lr_scale ** (i + 1):g}"
            cmd = [*base, "--attention", kind, "--student-init", str(out / names[-1] / "model")]
            cmd += ["--epochs", then_epochs, "--lr", lr2, *extra(then)]

            def job(cmd=cmd, name=name, before=jobs[names[-1]]):
                before()
                return retort(cmd, out / name)

            jobs[name] = job
            names, specs = [*names, name], [*specs, then]
            rows.append((f"{label}, then lr {lr2}", tuple(specs), name))
            chains[name] = names
    results = work_through(jobs, out)
    attn = summary(retort(attn_cmd, attn_dir))
    record = {"student": args.student, "epochs": args.epochs, "attention_transfer": attn, "runs": {}}
    lines = []
    for label, spec, name in rows:
        if isinstance(spec, tuple):  # cycles after the first: all their epochs, the best of them kept
            s = continued([summary(results[n]) for n in chains[name]])
            ref_names = [f"softmax{transfer_suffix(spec[0])}"]
            for then in spec[1:]:
                ref_names.append(cycle_name(ref_names[-1], then))
            ref = continued([summary(results[n]) for n in ref_names])
            data = ", then ".join(data_name(t) for t in spec)
        else:
            s, ref = summary(results[name]), summary(results[f"softmax{transfer_suffix(spec)}"])
            data = data_name(spec)
        s["vs_softmax"] = s["pearson"] / ref["pearson"]
        record["runs"][name] = {"label": label, "transfer": spec, **s}
        lines.append(
            [
                label,
                data,
                f"{s['pearson']:.4f}",
                f"{s['spearman']:.4f}",
                ", ".join(f"{v:.4f}" for v in s["per_epoch_pearson"]),
                f"{s['vs_softmax']:.3f}",
                f"{s['train_min']:.1f}",
            ]
        )
    (out / "linear_quality.json").write_text(json.dumps(record, indent=2))
    print(f"attention transfer: dev Pearson {attn['pearson']:.4f}, {attn['train_min']:.1f} min")
    print(
        table(
            [f"student {args.student}", "data", "dev Pearson", "dev Spearman", "per epoch", "vs softmax", "min"],
            lines,
            markdown=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
