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

from harness import (
    Option,
    Run,
    add,
    distill_command,
    number_text,
    parser,
    print_table,
    transfer_suffix,
    work_through,
)

SOFTMAX_LR = Option(
    "--softmax-lr", "learning rate of the softmax student", type=number_text, default="5e-5", metavar="LR"
)
LRS = Option("--lrs", "learning rates of the linear student", type=number_text, default=["2e-4", "4e-4"], metavar="LR")
THEN = Option("--then", "further cycles for every run, one per SPEC, each going on from the model the one before "
              "kept, on STS-B + SPEC ('' = STS-B alone)", metavar="SPEC")  # fmt: skip
THEN_EPOCHS = Option("--then-epochs", "epochs of each further cycle (default: --epochs)", type=int, low=1)
THEN_LR_SCALE = Option("--then-lr-scale", "each further cycle's lr = this x the lr of the cycle before", type=float,
                       default=0.5, low=0, open_low=True)  # fmt: skip


def summary(metrics: dict) -> dict:
    """What the table shows of one run: its best dev scores, every epoch's dev Pearson, its minutes."""
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
    """The data a run trained on, in words: ``STS-B`` or ``STS-B + SPEC``."""
    return f"STS-B + {spec}" if spec else "STS-B"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = parser(__doc__)
    add(p, "glue_dir", "teacher", "out", "student", "epochs", SOFTMAX_LR, LRS, "attention_epochs", "attention_lr",
        "transfer", THEN, THEN_EPOCHS, THEN_LR_SCALE, "seed", "threads", required=["glue_dir", "teacher"],
        many=["lrs"], any_number=["transfer", "then"],
        defaults={"out": "runs/lin4", "student": "4x384", "attention_epochs": 2, "transfer": [None], "then": [],
                  "threads": 1})  # fmt: skip
    return p.parse_args(argv)


class Plan:
    """The runs of the comparison as data: the attention-transfer run, every first-cycle run (softmax and
    linear at each lr, per transfer set) and the further cycles chained on each; ``rows`` say what the
    table shows (label, data, run name), ``chains`` which runs each further cycle continues."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.out = args, Path(args.out)
        self.base = Run.of(self.out, *distill_command("STS-B", args.glue_dir, args.teacher, args.student, args.seed,
                                                      args.threads), method="multilevel")  # fmt: skip
        self.attention = Run(self.out / "tf-exp-sep-attn", self.base.args).also(
            attention="linear", feature_map="hedgehog", hedgehog_act="exp", hedgehog_qk="separate",
            stage="attention", teacher_forced=True, epochs=args.attention_epochs, lr=args.attention_lr)  # fmt: skip
        self.jobs: dict = {}
        self.rows: list[tuple] = []
        self.chains: dict[str, list[str]] = {}
        self.first_lr: dict[str, tuple[str, str]] = {}
        for spec in [t or None for t in args.transfer] or [None]:
            self._first_cycle(spec)
        for label, spec, first in list(self.rows):
            self._further_cycles(label, spec, first)

    def run(self, name: str, **options) -> Run:
        """The run ``OUT/NAME``: the shared distill command and ``options``."""
        return Run(self.out / name, self.base.args).also(**options)

    def _first_cycle(self, spec: str | None) -> None:
        """The softmax student and the linear student at each lr, on STS-B (+ ``spec``)."""
        a = self.args
        name = f"softmax{transfer_suffix(spec)}"
        # the default learning rate is left out, as the depth study does, so its softmax run is this one
        softmax = self.run(name, attention="softmax", epochs=a.epochs, lr=a.softmax_lr if a.softmax_lr != "5e-5"
                           else None, transfer=spec)  # fmt: skip
        self.jobs[name] = softmax.make
        self.rows.append(("softmax", spec, name))
        self.first_lr[name] = ("softmax", a.softmax_lr)
        for lr in a.lrs:
            name = f"tf-exp-sep-e{a.epochs}-lr{lr}{transfer_suffix(spec)}"
            linear = self.run(name, attention="linear", student_init=str(self.attention.model), epochs=a.epochs,
                              lr=lr, transfer=spec)  # fmt: skip

            def job(run=linear):
                self.attention.make()
                return run.make()

            self.jobs[name] = job
            self.rows.append((f"linear hedgehog, lr {lr}", spec, name))
            self.first_lr[name] = ("linear", lr)

    def _further_cycles(self, label: str, spec: str | None, first: str) -> None:
        """One after the other: each goes on from the model the cycle before kept, at a learning rate scaled
        once more, on STS-B + its SPEC."""
        a = self.args
        kind, lr = self.first_lr[first]
        names, specs = [first], [spec]
        for i, then in enumerate(t or None for t in a.then):
            name = cycle_name(names[-1], then)
            lr2 = f"{float(lr) * a.then_lr_scale ** (i + 1):g}"
            run = self.run(name, attention=kind, student_init=str(self.out / names[-1] / "model"),
                           epochs=a.then_epochs or a.epochs, lr=lr2, transfer=then)  # fmt: skip

            def job(run=run, before=self.jobs[names[-1]]):
                before()
                return run.make()

            self.jobs[name] = job
            names, specs = [*names, name], [*specs, then]
            self.rows.append((f"{label}, then lr {lr2}", tuple(specs), name))
            self.chains[name] = names


def tabulate(plan: Plan, results: dict) -> tuple[dict, list[list]]:
    """The record's runs (each against the softmax run on the same data) and the table's rows."""
    runs, lines = {}, []
    for label, spec, name in plan.rows:
        if isinstance(spec, tuple):  # cycles after the first: all their epochs, the best of them kept
            s = continued([summary(results[n]) for n in plan.chains[name]])
            ref_names = [f"softmax{transfer_suffix(spec[0])}"]
            for then in spec[1:]:
                ref_names.append(cycle_name(ref_names[-1], then))
            ref = continued([summary(results[n]) for n in ref_names])
            data = ", then ".join(data_name(t) for t in spec)
        else:
            s, ref = summary(results[name]), summary(results[f"softmax{transfer_suffix(spec)}"])
            data = data_name(spec)
        s["vs_softmax"] = s["pearson"] / ref["pearson"]
        runs[name] = {"label": label, "transfer": spec, **s}
        lines.append([label, data, f"{s['pearson']:.4f}", f"{s['spearman']:.4f}",
                      ", ".join(f"{v:.4f}" for v in s["per_epoch_pearson"]), f"{s['vs_softmax']:.3f}",
                      f"{s['train_min']:.1f}"])  # fmt: skip
    return runs, lines


def main(argv: list[str] | None = None) -> int:
    """Train what is missing, write OUT/linear_quality.json and print the table."""
    args = parse_args(argv)
    plan = Plan(args)
    results = work_through(plan.jobs, plan.out)
    attn = summary(plan.attention.make())
    runs, lines = tabulate(plan, results)
    record = {"student": args.student, "epochs": args.epochs, "attention_transfer": attn, "runs": runs}
    (plan.out / "linear_quality.json").write_text(json.dumps(record, indent=2))
    print(f"attention transfer: dev Pearson {attn['pearson']:.4f}, {attn['train_min']:.1f} min")
    headers = [f"student {args.student}", "data", "dev Pearson", "dev Spearman", "per epoch", "vs softmax", "min"]
    print_table(headers, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
