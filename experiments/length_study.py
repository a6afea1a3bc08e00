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

from _runs import attention_transfer, distill_command, retort, work_through

from retort.report.tables import table


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", default="runs/length")
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024, 2048, 4096])
    p.add_argument("--student", default="4x384")
    p.add_argument("--feature-map", default="elu")
    p.add_argument("--softmax-max", type=int, default=4096, help="longest input for the softmax student")
    p.add_argument("--train-examples", type=int, default=512)
    p.add_argument("--dev-examples", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--attention-epochs", type=int, default=1, help="hedgehog: attention-transfer epochs")
    p.add_argument("--attention-lr", type=float, default=5e-3, help="hedgehog: attention-transfer learning rate")
    args = p.parse_args()
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
            step, secs, final = convergence(m["evals"])
            r = {
                "length": length,
                "kind": kind,
                "final_pearson": final,
                "best": m["best"]["dev"]["pearson"],
                "steps_to_95": step,
                "train_seconds_to_95": secs,
                "train_seconds": m["train_seconds"],
                "wall_seconds": m["wall_seconds"],
                "train_samples_per_s": m["train_samples_per_s"],
                "curve": [(e["step"], e["results"]["dev"]["pearson"]) for e in m["evals"]],
            }
            record["runs"].append(r)
            rows.append(
                [
                    length,
                    kind,
                    final,
                    "-" if step is None else step,
                    f"{secs:.0f}",
                    f"{m['train_seconds'] / 60:.1f}",
                    f"{m['wall_seconds'] / 60:.1f}",
                    f"{m['train_samples_per_s']:.2f}",
                ]
            )
    (out / "length.json").write_text(json.dumps(record, indent=2))
    print(
        table(
            [
                "tokens",
                "attention",
                "final dev Pearson",
                "steps to 95%",
                "train s to 95%",
                "train min",
                "wall min",
                "train samples/s",
            ],
            rows,
            markdown=True,
        )
    )
    plot(record, out / "length.png")
    return 0


def train(args, kind: str, length: int) -> dict:
    """One student at one length; returns its final metrics."""
    common = distill_command("STS-B", args.glue_dir, args.teacher, args.student, args.seed, args.threads)
    cmd = [
        *common,
        "--attention",
        kind,
        "--method",
        "kd",
        "--long-sts",
        str(length),
        "--set",
        f"long_sts_train={args.train_examples}",
        "--set",
        f"long_sts_dev={args.dev_examples}",
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--eval-every",
        str(args.eval_every),
        "--eval-batch-size",
        str(args.batch_size),
        "--max-length",
        str(length),
    ]
    if kind == "linear":
        cmd += ["--feature-map", args.feature_map]
        if args.feature_map == "hedgehog":  # attention transfer on short STS-B first, shared by all lengths
            first = Path(args.out) / f"linear-hedgehog-{args.student}-attn"
            base = [*common, "--attention", "linear", "--method", "multilevel"]
            attention_transfer(base, first, args.attention_epochs, args.attention_lr)
            cmd += ["--student-init", str(first / "model")]
    return retort(cmd, Path(args.out) / f"{kind}-{length}")


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for kind, style in (("softmax", "o-"), ("linear", "s-")):
        pts = sorted(
            (r["length"], r["final_pearson"], r["train_seconds_to_95"]) for r in record["runs"] if r["kind"] == kind
        )
        if pts:
            axes[0].plot([x for x, _, _ in pts], [y for _, y, _ in pts], style, label=kind)
            axes[1].plot([x for x, _, _ in pts], [t for _, _, t in pts], style, label=kind)
    for ax, label in ((axes[0], "final dev Pearson"), (axes[1], "training seconds to 95% of final")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("input tokens (long STS-B)")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
