"""Issue #4's cost study: latency and peak memory of one forward pass at batch 1, for input lengths from
128 to 8192 tokens, softmax student (PyTorch scaled-dot-product attention, not eager) against the
linear-attention student of the same depth and width. Weights do not change the cost, so both models
are built from the teacher's config with random weights and positions extended to the longest length.

Each (model, length) point runs in a fresh process: it builds the model, runs ``--warmup`` untimed
passes, then ``--repeats`` timed ones; peak memory is the process's high-water RSS minus its RSS
before the first pass (so model weights are not counted).

    python experiments/cost_study.py --out docs/cost --layers 4 --hidden 384 --threads 2

Writes OUT/cost.json, OUT/cost.png (log axes) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

LENGTHS = [128, 256, 512, 1024, 2048, 4096, 8192]


def measure(
    kind: str,
    length: int,
    layers: int,
    hidden: int,
    heads: int,
    threads: int,
    warmup: int,
    repeats: int,
    feature_map: str,
) -> dict:
    """Runs inside the child process."""
    import numpy as np
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from retort.machine import peak_rss_mb, rss_mb
    from retort.models import linear
    from retort.models.init import linear_config
    from retort.models.outputs import forward

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    conf = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max(length, 512),
        num_labels=1,
    )
    conf._attn_implementation = "sdpa"  # PyTorch's fused scaled-dot-product attention, not eager
    if kind == "softmax":
        model = BertForSequenceClassification(conf).eval()
        assert model.config._attn_implementation == "sdpa"
    else:
        dims = (layers, hidden, heads, 4 * hidden)
        model = linear.LinearBertForSequenceClassification(
            linear_config(conf, *dims, max(length, 512), feature_map=feature_map)
        ).eval()
    ids = torch.randint(1000, 2000, (1, length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    base = rss_mb()
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            forward(model, batch)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {
        "kind": kind,
        "length": length,
        "ms_p50": 1000 * float(np.median(times)),
        "ms_min": 1000 * min(times),
        "repeats": repeats,
        "peak_mb": peak_rss_mb() - base,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/cost")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--feature-map", default="elu")
    p.add_argument("--child", nargs=2, metavar=("KIND", "LENGTH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        r = measure(
            args.child[0],
            int(args.child[1]),
            args.layers,
            args.hidden,
            args.heads,
            args.threads,
            args.warmup,
            args.repeats,
            args.feature_map,
        )
        print(json.dumps(r))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for length in args.lengths:
        for kind in ("softmax", "linear"):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                kind,
                str(length),
                "--layers",
                str(args.layers),
                "--hidden",
                str(args.hidden),
                "--heads",
                str(args.heads),
                "--threads",
                str(args.threads),
                "--warmup",
                str(args.warmup),
                "--repeats",
                str(args.repeats),
                "--feature-map",
                args.feature_map,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                r = {"kind": kind, "length": length, "error": done.stderr.strip().splitlines()[-1]}
            else:
                r = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(r)
            print(json.dumps(r), flush=True)
    from retort.machine import environment
    from retort.report.tables import table

    record = {
        "layers": args.layers,
        "hidden": args.hidden,
        "heads": args.heads,
        "feature_map": args.feature_map,
        "batch_size": 1,
        "results": results,
        "environment": environment(args.threads),
    }
    (out / "cost.json").write_text(json.dumps(record, indent=2))
    by = {(r["kind"], r["length"]): r for r in results}
    rows = []
    for length in args.lengths:
        s, lin = by[("softmax", length)], by[("linear", length)]
        ratio = lin["ms_p50"] / s["ms_p50"] if "ms_p50" in s and "ms_p50" in lin else None
        rows.append(
            [
                length,
                f"{s.get('ms_p50', float('nan')):.1f}",
                f"{lin.get('ms_p50', float('nan')):.1f}",
                f"{ratio:.3f}" if ratio else "-",
                f"{s.get('peak_mb', float('nan')):.0f}",
                f"{lin.get('peak_mb', float('nan')):.0f}",
            ]
        )
    print(
        table(
            ["tokens", "softmax ms", "linear ms", "linear/softmax time", "softmax peak MiB", "linear peak MiB"],
            rows,
            markdown=True,
        )
    )
    plot(record, out / "cost.png")
    return 0


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for kind, style in (("softmax", "o-"), ("linear", "s-")):
        pts = [r for r in record["results"] if r["kind"] == kind and "ms_p50" in r]
        xs = [r["length"] for r in pts]
        axes[0].plot(xs, [r["ms_p50"] for r in pts], style, label=f"{kind} attention")
        axes[1].plot(xs, [max(r["peak_mb"], 1e-1) for r in pts], style, label=f"{kind} attention")
    for ax, label in ((axes[0], "forward time, batch 1 (ms)"), (axes[1], "peak memory above model (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("input tokens")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        f"{record['layers']}x{record['hidden']} student, {record['environment']['threads']} threads, "
        f"{record['environment']['cpu']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
