"""Search at scale: a million candidate embeddings, exact against approximate FAISS indexes (``deploy/vectors.py``,
the indexes ``retort dse index --faiss`` writes and ``retort dse search`` reads).

Candidates are passages of the corpus: every sentence (3-60 words, deduplicated; ``mining.read_corpus``), then
windows of two and three consecutive sentences of one document, until ``--candidates`` distinct texts (the 50 MB
Wikipedia corpus holds about 345,000 sentences, so a million needs the windows). They are embedded once by
``--model`` (any folder ``retort embed eval`` reads: a Model2Vec folder makes a million in minutes on two cores;
the vectors are kept in ``OUT/embeddings.npy`` and reused). Queries are sentences that are not candidates:
the STS-B dev sentences (``--queries``, seeded draw). For each index kind: build time, file size, the process's
peak memory, recall@10 against exact search (``faiss.knn`` over all candidates) on those queries, and the time
of one query at batch 1 (median and p90 over the queries, ``--threads`` threads), at the parameters the index is
built with and at wider and narrower search-time settings (HNSW's efSearch, IVF-PQ's nprobe; ``SWEEP``).

    python experiments/search_scale.py --model runs/static/minilm-m2v --corpus ../shared/data/corpus \\
        --glue-dir ../shared/data/glue --candidates 1000000 --out runs/search-scale \\
        --json docs/data/search-scale-1m.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from retort.data.tasks import get_task, load_split
from retort.deploy import vectors
from retort.distill.mining import read_corpus
from retort.evaluation.embeddings import open_encoder
from retort.machine import cpu_label

KNOBS = {"hnsw": "efSearch", "ivfpq": "nprobe"}
SWEEP = {"hnsw": [32, 64, 128, 512], "ivfpq": [8, 128]}  # beside the built value (256, 32)


def passages(corpus: str, count: int) -> list[str]:
    """``count`` distinct texts: the corpus's sentences, then 2- and 3-sentence windows of one document."""
    sentences = read_corpus([corpus], 3, 60)
    texts = dict.fromkeys(s.text for s in sentences)
    for width in (2, 3):
        for i in range(len(sentences) - width + 1):
            if len(texts) >= count:
                break
            window = sentences[i : i + width]
            if len({s.doc for s in window}) == 1:
                texts.setdefault(" ".join(s.text for s in window))
    if len(texts) < count:
        raise SystemExit(f"--corpus {corpus}: {len(texts):,} distinct passages, fewer than --candidates {count:,}")
    return list(texts)[:count]


def embedded(model: str, texts: list[str], path: Path) -> tuple[np.ndarray, float]:
    """The normalised vectors of ``texts`` (from ``path`` when an earlier run made them) and the seconds taken."""
    if path.is_file():
        x = np.load(path)
        if len(x) == len(texts):
            return x, float("nan")
    _, encode, _ = open_encoder(model)
    start = time.perf_counter()
    x = np.concatenate([vectors.normalised(np.asarray(encode(texts[i : i + 50_000])))
                        for i in range(0, len(texts), 50_000)])  # fmt: skip
    seconds = time.perf_counter() - start
    np.save(path, x)
    return x, seconds


def measure(index, queries: np.ndarray, truth: np.ndarray, exact: np.ndarray | None = None) -> dict:
    """Recall@10 against ``truth`` and the time of one query at a time (ms), as ``dse search`` asks
    (``vectors.top_k``: IVF-PQ's proposals re-ranked over ``exact``)."""
    times, hits = [], 0
    for q, t in zip(queries, truth):
        start = time.perf_counter()
        _, rows = vectors.top_k(index, q, 10, exact)
        times.append((time.perf_counter() - start) * 1000)
        hits += len(set(rows.tolist()) & set(t.tolist()))
    return {"recall_at_10": hits / (10 * len(queries)), "ms_p50": float(np.percentile(times, 50)),
            "ms_p90": float(np.percentile(times, 90)), "queries": len(queries)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Build each index over the candidates, measure it, print a table, write JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--glue-dir")
    p.add_argument("--candidates", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"], choices=vectors.KINDS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--json")
    args = p.parse_args(argv)
    faiss = vectors.faiss_module()
    faiss.omp_set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts = passages(args.corpus, args.candidates)
    x, embed_s = embedded(args.model, texts, out / "embeddings.npy")
    known = set(texts)
    dev = sorted({t for ex in load_split(get_task("STS-B"), "dev", args.glue_dir).examples for t in ex.texts} - known)
    rng = np.random.default_rng(0)
    chosen = [dev[i] for i in sorted(rng.choice(len(dev), size=min(args.queries, len(dev)), replace=False))]
    _, encode, _ = open_encoder(args.model)
    queries = vectors.normalised(np.asarray(encode(chosen)))
    start = time.perf_counter()
    _, truth = faiss.knn(queries, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    exact_s = time.perf_counter() - start
    rows = []
    for kind in args.kinds:
        folder = out / kind
        folder.mkdir(exist_ok=True)
        record = vectors.build(kind, x, folder)
        index = vectors.load(folder, record)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for knob, value in [(None, None), *((KNOBS[kind], v) for v in SWEEP.get(kind, []))]:
            if knob:  # the same index searched wider or narrower (a search-time parameter, no rebuild)
                vectors.configure(index, kind, {**record["params"], knob: value})
            timed = measure(index, queries, truth, x if vectors.reranked(kind) else None)
            # recall_at_10 when built (its own rows as queries), then the STS-B queries' (timed)
            rows.append({**record, "recall_at_10_on_candidates": record.get("recall_at_10"),
                         "search": {knob: value} if knob else "as built", **timed, "peak_rss_mb": rss})  # fmt: skip
            r = rows[-1]
            print(f"{kind:6s} {str(r['search']):18s} build {r['build_seconds']:7.1f}s  file {r['bytes'] / 2**20:7.1f} "
                  f"MiB  recall@10 {r['recall_at_10']:.4f}  query p50 {r['ms_p50']:.3f} ms  p90 {r['ms_p90']:.3f} ms  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MiB", flush=True)  # fmt: skip
    words = [f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
             for k, v in vars(args).items() if v is not None]  # fmt: skip
    result = {"command": "python experiments/search_scale.py " + " ".join(words),
              "cpu": cpu_label(), "threads": args.threads, "model": args.model, "candidates": len(texts),
              "dims": int(x.shape[1]), "embed_seconds": embed_s, "queries": len(chosen),
              "query_source": "STS-B dev sentences that are not candidates", "exact_knn_seconds_all_queries": exact_s,
              "indexes": rows}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "indexes"}, indent=2))


if __name__ == "__main__":
    main()
