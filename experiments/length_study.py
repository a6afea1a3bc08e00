"""Issue #4's length study: softmax (up to ``--softmax-max`` tokens, where it fits) and linear-attention
students on the long STS-B variant (src/retort/data/long_sts.py) at 128 to 4096 tokens.

Each run distils a student (teacher's width, layers copied from the teacher, position table extended by
copying) on cached teacher scores (soft MSE + hard MSE: the teacher itself cannot read long inputs),
evaluating on the long dev examples every ``--eval-every`` steps. Reported: final dev Pearson, steps
and training seconds until dev Pearson first reaches 95% of its final value, total wall time.

With ``--feature-map hedgehog`` the linear students first get Hedgehog's attention transfer on short
STS-B (``--stage attention``, ``--attention-epochs`` at ``--attention-lr``, the same run as the depth
study's) and every length starts from that model, its position table grown to the length.

    python experiments/length_study.py --glue-dir ../shared/data/glue --teacher runs/teachers/STS-B/model \
        --out runs/length --lengths 128 512 1024 2048 4096

Several copies can run side by side (``--threads 1`` each); they share the runs.

Writes OUT/length.json, OUT/length.png and prints a Markdown table.
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
    attention_transfer,
    distill_command,
    figure,
    log2_axes,
    parser,
    print_table,
    save_figure,
    work_through,
)

SOFTMAX_MAX = Option("--softmax-max", "longest input for the softmax student", type=int, default=4096, low=1)
TRAIN_EXAMPLES = Option("--train-examples", "long STS-B training examples", type=int, default=512, low=1)
DEV_EXAMPLES = Option("--dev-examples", "long STS-B dev examples", type=int, default=128, low=1)
EVAL_EVERY = Option("--eval-every", "evaluate on the long dev examples every N steps", type=int, default=16, low=1)
HEADERS = ["tokens", "attention", "final dev Pearson", "steps to 95%", "train s to 95%", "train min", "wall min",
           "train samples/s"]  # fmt: skip


def convergence(evals: list[dict], frac: float = 0.95) -> tuple[int | None, float, float]:
    """(step, training seconds, final dev Pearson): where dev Pearson first reached ``frac`` of its final
    value; (None, nan, final) when the final value is not positive (nothing to converge to)."""
    final = evals[-1]["results"]["dev"]["pearson"]
    if not final > 0:
        return None, float("nan"), final
    for e in evals:
        if e["results"]["dev"]["pearson"] >= frac * final:
            return e["step"], e.get("train_seconds", float("nan")), final
    return evals[-1]["step"], evals[-1].get("train_seconds", float("nan")), final


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = parser(__doc__)
    add(p, "glue_dir", "teacher", "out", "lengths", "student", "feature_map", SOFTMAX_MAX, TRAIN_EXAMPLES,
        DEV_EXAMPLES, "train_batch_size", "epochs", EVAL_EVERY, "threads", "seed", "attention_epochs", "attention_lr",
        required=["glue_dir", "teacher"], many=["lengths"],
        defaults={"out": "runs/length", "lengths": [128, 512, 1024, 2048, 4096], "student": "4x384",
                  "train_batch_size": 8, "epochs": 2, "threads": 2, "attention_epochs": 1})  # fmt: skip
    args = p.parse_args(argv)
    args.attention_lr = float(args.attention_lr)  # as it always was: passed on as 0.005
    return args


def run_record(length: int, kind: str, m: dict) -> dict:
    """What the JSON keeps of one run: final and best dev Pearson, time to 95%, speed, the dev curve."""
    step, secs, final = convergence(m["evals"])
    return {"length": length, "kind": kind, "final_pearson": final, "best": m["best"]["dev"]["pearson"],
            "steps_to_95": step, "train_seconds_to_95": secs, "train_seconds": m["train_seconds"],
            "wall_seconds": m["wall_seconds"], "train_samples_per_s": m["train_samples_per_s"],
            "curve": [(e["step"], e["results"]["dev"]["pearson"]) for e in m["evals"]]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Train what is missing, write OUT/length.json, print the table, draw OUT/length.png."""
    args = parse_args(argv)
    out = Path(args.out)
    runs = [(n, k) for n in args.lengths for k in ("softmax", "linear") if k == "linear" or n <= args.softmax_max]
    longest_first = sorted(runs, key=lambda r: -r[0])  # so that side-by-side workers finish together
    jobs = {f"{k}-{n}": (lambda n=n, k=k: train(args, k, n)) for n, k in longest_first}
    done = work_through(jobs, out / ".locks")
    record: dict = {"args": vars(args), "runs": []}
    rows = []
    for length in args.lengths:
        for kind in ("softmax", "linear"):
            if (length, kind) not in runs:
                rows.append([length, kind, "-", "-", "-", "-", "-", f"not run (> {args.softmax_max} tokens)"])
                continue
            m = done[f"{kind}-{length}"]
            r = run_record(length, kind, m)
            record["runs"].append(r)
            step = r["steps_to_95"]
            rows.append([length, kind, r["final_pearson"], "-" if step is None else step,
                         f"{r['train_seconds_to_95']:.0f}", f"{m['train_seconds'] / 60:.1f}",
                         f"{m['wall_seconds'] / 60:.1f}", f"{m['train_samples_per_s']:.2f}"])  # fmt: skip
    (out / "length.json").write_text(json.dumps(record, indent=2))
    print_table(HEADERS, rows)
    plot(record, out / "length.png")
    return 0


def train(args, kind: str, length: int) -> dict:
    """One student at one length; returns its final metrics."""
    common = distill_command("STS-B", args.glue_dir, args.teacher, args.student, args.seed, args.threads)
    run = Run.of(Path(args.out) / f"{kind}-{length}", *common, attention=kind, method="kd", long_sts=length).also(
        "--set", f"long_sts_train={args.train_examples}", "--set", f"long_sts_dev={args.dev_examples}",
        batch_size=args.batch_size, epochs=args.epochs, eval_every=args.eval_every, eval_batch_size=args.batch_size,
        max_length=length)  # fmt: skip
    if kind == "linear":
        run = run.also(feature_map=args.feature_map)
        if args.feature_map == "hedgehog":  # attention transfer on short STS-B first, shared by all lengths
            first = Path(args.out) / f"linear-hedgehog-{args.student}-attn"
            base = [*common, "--attention", "linear", "--method", "multilevel"]
            attention_transfer(base, first, args.attention_epochs, args.attention_lr)
            run = run.also(student_init=str(first / "model"))
    return run.make()


def plot(record: dict, path: Path) -> None:
    """Final dev Pearson and training seconds to 95% of it against input length, per attention kind."""
    fig, axes = figure(1, 2, figsize=(11, 4))
    for kind, style in (("softmax", "o-"), ("linear", "s-")):
        pts = sorted(
            (r["length"], r["final_pearson"], r["train_seconds_to_95"]) for r in record["runs"] if r["kind"] == kind
        )
        if pts:
            axes[0].plot([x for x, _, _ in pts], [y for _, y, _ in pts], style, label=kind)
            axes[1].plot([x for x, _, _ in pts], [t for _, _, t in pts], style, label=kind)
    log2_axes(axes[0], "final dev Pearson", "input tokens (long STS-B)")
    log2_axes(axes[1], "training seconds to 95% of final", "input tokens (long STS-B)", log_y=True)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
