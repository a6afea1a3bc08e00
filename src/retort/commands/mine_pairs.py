"""``retort mine-pairs``: a transfer set of sentence pairs mined from a text corpus. Sentences are drawn
from the corpus, embedded with a sentence-embedding model and paired with neighbours, near neighbours,
sentences of the same document, random ones and word-edited copies (distill/mining.py); the TSV it
writes is a ``--transfer`` file for distillation.
"""

from __future__ import annotations

import argparse
import time

from retort import options
from retort.errors import RetortError


def add_parser(sub) -> None:
    """The ``mine-pairs`` subcommand."""
    p = sub.add_parser("mine-pairs", help="a transfer set of sentence pairs mined from a text corpus")
    options.add(p, "corpus", "pairs_out", "pairs", "pool", "embedder", "mix", "mining_seed", "min_words", "max_words",
                "batch_size", "threads", required=("corpus", "pairs_out", "pairs"), many=("corpus",))  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Mine the pairs and say what was written."""
    import torch  # noqa: PLC0415

    from retort.distill.mining import mine_corpus  # noqa: PLC0415  (torch)

    if args.max_words < args.min_words:
        raise RetortError(f"--max-words {args.max_words}: must be at least --min-words {args.min_words}")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    record = mine_corpus(args.corpus, args.out, args.pairs, args.model, args.pool, args.mix, args.seed,
                         args.min_words, args.max_words, args.batch_size)  # fmt: skip
    kinds = ", ".join(f"{k} {v}" for k, v in record["kinds"].items() if v)
    print(
        f"wrote {record['pairs']} pairs ({kinds}) from a pool of {record['pool']} of the corpus's "
        f"{record['corpus_sentences']} sentences to {args.out} in {time.perf_counter() - t0:.0f}s; "
        f"use it with --transfer {args.out}"
    )
    return 0
