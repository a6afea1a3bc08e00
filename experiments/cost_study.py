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

from harness import Option, add, command, figure, log2_axes, parser, print_table, save_figure

LENGTHS = [128, 256, 512, 1024, 2048, 4096, 8192]
LAYERS = Option("--layers", "layers of both students", type=int, default=4, low=1)
HEADS = Option("--heads", "attention heads of both students", type=int, default=12, low=1)
# what a child process is told: the model and timing options, passed on as given
CHILD_OPTIONS = ("layers", "hidden", "heads", "threads", "warmup", "repeats", "feature_map")


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
    """One point, measured inside a child process: ``warmup`` untimed then ``repeats`` timed forward passes
    of a random-weight ``kind`` student at batch 1 and ``length`` tokens; median and fastest ms, and the
    peak RSS above the RSS before the first pass (MiB)."""
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``--child KIND LENGTH``: this process is one point's child)."""
    p = parser(__doc__)
    add(p, "out", LAYERS, "hidden", HEADS, "threads", "lengths", "warmup", "repeats", "feature_map",
        many=["lengths"],
        defaults={"out": "docs/cost", "threads": 2, "lengths": LENGTHS, "warmup": 1, "repeats": 3})  # fmt: skip
    p.add_argument("--child", nargs=2, metavar=("KIND", "LENGTH"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def measure_all(args) -> list[dict]:
    """Every (length, kind) point, each in a fresh child process of this script; a point whose child
    failed is recorded with its last error line."""
    results = []
    for length in args.lengths:
        for kind in ("softmax", "linear"):
            child = command("--child", kind, str(length), **{k: getattr(args, k) for k in CHILD_OPTIONS})
            done = subprocess.run([sys.executable, __file__, *child], capture_output=True, text=True)
            if done.returncode != 0:
                r = {"kind": kind, "length": length, "error": done.stderr.strip().splitlines()[-1]}
            else:
                r = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(r)
            print(json.dumps(r), flush=True)
    return results


def print_cost(record: dict, lengths: list[int]) -> None:
    """The Markdown table: time and peak memory of both students at each length, and the time ratio."""
    by = {(r["kind"], r["length"]): r for r in record["results"]}
    rows = []
    for length in lengths:
        s, lin = by[("softmax", length)], by[("linear", length)]
        ratio = lin["ms_p50"] / s["ms_p50"] if "ms_p50" in s and "ms_p50" in lin else None
        rows.append([length, f"{s.get('ms_p50', float('nan')):.1f}", f"{lin.get('ms_p50', float('nan')):.1f}",
                     f"{ratio:.3f}" if ratio else "-", f"{s.get('peak_mb', float('nan')):.0f}",
                     f"{lin.get('peak_mb', float('nan')):.0f}"])  # fmt: skip
    headers = ["tokens", "softmax ms", "linear ms", "linear/softmax time", "softmax peak MiB", "linear peak MiB"]
    print_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    """Measure every point (or, as a child, one), write OUT/cost.json, print the table, draw OUT/cost.png."""
    args = parse_args(argv)
    if args.child:
        kind, length = args.child[0], int(args.child[1])
        print(json.dumps(measure(kind, length, *(getattr(args, k) for k in CHILD_OPTIONS))))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = measure_all(args)
    from retort.machine import environment  # noqa: PLC0415

    record = {"layers": args.layers, "hidden": args.hidden, "heads": args.heads, "feature_map": args.feature_map,
              "batch_size": 1, "results": results, "environment": environment(args.threads)}  # fmt: skip
    (out / "cost.json").write_text(json.dumps(record, indent=2))
    print_cost(record, args.lengths)
    plot(record, out / "cost.png")
    return 0


def plot(record: dict, path: Path) -> None:
    """Time and peak memory against input length, both axes logarithmic, one line per attention kind."""
    fig, axes = figure(1, 2, figsize=(11, 4))
    for kind, style in (("softmax", "o-"), ("linear", "s-")):
        pts = [r for r in record["results"] if r["kind"] == kind and "ms_p50" in r]
        xs = [r["length"] for r in pts]
        axes[0].plot(xs, [r["ms_p50"] for r in pts], style, label=f"{kind} attention")
        axes[1].plot(xs, [max(r["peak_mb"], 1e-1) for r in pts], style, label=f"{kind} attention")
    for ax, label in ((axes[0], "forward time, batch 1 (ms)"), (axes[1], "peak memory above model (MiB)")):
        log2_axes(ax, label, log_y=True)
    fig.suptitle(
        f"{record['layers']}x{record['hidden']} student, {record['environment']['threads']} threads, "
        f"{record['environment']['cpu']}"
    )
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
