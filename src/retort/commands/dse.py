"""``retort dse``: distilled sentence embeddings. ``train`` distills a cross-encoder teacher into a siamese
bi-encoder (a training command, see commands/train.py); ``index`` embeds a candidate list once; ``search``
scores queries against every candidate of an index; ``export`` writes the encoder in sentence-transformers
format.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from retort import options, outputs
from retort.commands import train
from retort.errors import RetortError
from retort.paths import write_result
from retort.report.tables import table


def add_parser(sub) -> None:
    """``dse`` and its four subcommands."""
    p = sub.add_parser("dse", help="distilled sentence embeddings: train, index, search, export")
    dse = p.add_subparsers(dest="dse_command", required=True)
    t = dse.add_parser("train", help="distill a cross-encoder teacher into a siamese bi-encoder")
    train.add_training_options(t, "dse")
    options.add(t, "c")
    t = dse.add_parser("index", help="precompute candidate embeddings")
    options.add(t, "model", "candidates", "index_out", "batch_size", "faiss", "threads",
                required=("model", "candidates", "index_out"))  # fmt: skip
    t.set_defaults(run=run_index)
    t = dse.add_parser("search", help="score queries against every candidate of an index", description=(
        "The score column says which score ranks: cosine (default) is the cosine similarity of the two "
        "embeddings, what the sentence-transformers export and any vector store give, read from the index's "
        "FAISS file when it has one; pair is the bi-encoder's pair head, which the cross-encoder's scores were "
        "distilled into (a score, or the probability of the matching class), exact over every candidate and "
        "only in retort's folder, so its order can differ from the export's."))  # fmt: skip
    options.add(t, "index", "query", "k", "score", "index_model", "json_out", "threads", required=("index", "query"))
    t.set_defaults(run=run_search)
    t = dse.add_parser("export", help="write the encoder in sentence-transformers format")
    options.add(t, "model", "st_out", required=("model", "st_out"))
    t.set_defaults(run=run_export)


def run_index(args: argparse.Namespace) -> int:
    """Embed the candidates once into an index folder."""
    from retort.deploy import dse  # noqa: PLC0415  (torch is imported only for a PyTorch model folder)

    meta = dse.build_index(args.model, args.candidates, args.out, args.batch_size, args.faiss, args.threads)
    built = meta.get("faiss") or {}
    recall = (built.get("recall_at_10") or {}).get("recall")
    extra = (
        f"; FAISS {built['kind']} in {built['build_seconds']:.1f}s, {built['bytes'] / 2**20:.1f} MiB" if built else ""
    )
    extra += f", recall@10 {recall:.3f} against exact search" if recall is not None else ""
    print(f"indexed {meta['count']} candidates ({meta['dim']}-d) in {args.out}{extra}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    """Print the top ``k`` candidates of each query as a table; ``--json`` also writes them (``-``: to
    standard output, the table going to stderr)."""
    from retort.deploy import dse  # noqa: PLC0415  (torch is imported only for a PyTorch model folder)

    reads = [outputs.local(args.index, "the index"), outputs.local(args.model or _index_model(args.index), "the model")]
    outputs.check_output(args.json_out, "--json", reads=reads, stdout=True)
    if any(not q.strip() for q in args.query):
        raise RetortError("--query: a query is empty or only whitespace")
    with outputs.result_stream(args.json_out) as stream:
        t0 = time.perf_counter()
        results, name = dse.search(args.index, args.query, args.k, args.model, args.threads, args.score)
        for query, hits in zip(args.query, results):
            print(f"query: {query}")
            print(table(["rank", name, "candidate"], [[h["rank"], h["score"], h["text"][:100]] for h in hits]))
        print(f"({time.perf_counter() - t0:.2f}s including model load)")
    if args.json_out:
        record = {"queries": args.query, "score": name, "results": results}
        write_result(args.json_out, json.dumps(record, indent=2), stream)
    return 0


def _index_model(index: str) -> str | None:
    """The model folder an index says it was made with (None where it cannot say: search reports why)."""
    try:
        model = json.loads((Path(index) / "index.json").read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return None
    return model if isinstance(model, str) else None


def run_export(args: argparse.Namespace) -> int:
    """Write the bi-encoder as a sentence-transformers model folder."""
    from retort.deploy import dse  # noqa: PLC0415  (torch is imported only for a PyTorch model folder)

    out = dse.export(args.model, args.out)
    print(f"wrote a sentence-transformers model to {out}: SentenceTransformer({str(out)!r}).encode(...)")
    return 0
