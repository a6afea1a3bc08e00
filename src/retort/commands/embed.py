"""``retort embed``: sentence-embedding models. ``static`` distils a sentence-transformers teacher into static
embeddings (Model2Vec, ``deploy/static.py``); ``eval`` scores embedding models on STS-style pairs (Spearman of
cosine, ``evaluation/embeddings.py``), each folder beside the others in one table.
"""

from __future__ import annotations

import argparse
import json

from retort import options, outputs
from retort.data.spec import load_task
from retort.data.tasks import get_task, task_inputs
from retort.deploy.static import distill_static
from retort.errors import RetortError
from retort.paths import write_result
from retort.report.tables import table


def add_parser(sub) -> None:
    """``embed`` and its subcommands."""
    p = sub.add_parser("embed", help="sentence embeddings: static (Model2Vec) baselines, STS evaluation")
    embed = p.add_subparsers(dest="embed_command", required=True)
    t = embed.add_parser("static", help="distil a sentence-transformers teacher into static embeddings (Model2Vec)")
    options.add(t, "model", "model_out", required=("model", "model_out"))
    t.set_defaults(run=run_static)
    t = embed.add_parser("eval", help="Spearman of cosine on STS-style pairs, one row per model folder")
    options.add(t, "model", "source_task", "data", "glue_dir", "split", "threads", "json_out", required=("model",),
                many=("model",))  # fmt: skip
    t.set_defaults(run=run_eval)


def run_static(args: argparse.Namespace) -> int:
    """Distil and say what was written."""
    record = distill_static(args.model, args.out)
    print(f"wrote {args.out}: {record['vocabulary']:,} token vectors of {record['dims']} dimensions from "
          f"{record['teacher']} in {record['seconds']:.0f}s")  # fmt: skip
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Score every model on the same pairs; a table, and JSON with ``--json``."""
    from retort.evaluation.embeddings import require_folder, sts_scores  # noqa: PLC0415  (numpy, scipy)

    for model in args.model:  # the models first: a missing one is named before any data is read
        require_folder(model)
    if args.task and args.data:
        raise RetortError("--task and --data: give one (a GLUE task, or your own data)")
    task = load_task(args.data) if args.data else get_task(args.task or "STS-B")
    reads = [*(outputs.local(m, "a model") for m in args.model), *task_inputs(task, args.glue_dir)]
    outputs.check_output(args.json_out, "--json", reads=reads, stdout=True)
    with outputs.result_stream(args.json_out) as stream:
        results = [sts_scores(m, task, args.split, args.glue_dir, args.threads) for m in args.model]
        print(table(["model", "kind", "dims", f"{task.name} {args.split} Spearman", "Pearson", "pairs",
                     "embed s"], [[r["model"], r["kind"], r["dims"], f"{r['spearman']:.4f}", f"{r['pearson']:.4f}",
                                  r["pairs"], f"{r['embed_seconds']:.2f}"] for r in results]))  # fmt: skip
        print("cosine of the two embeddings against the gold score; a constant predictor scores 0")
    if args.json_out:
        write_result(args.json_out, json.dumps({"results": results}, indent=2), stream)
    return 0
