"""Cosine search over an index's embeddings (``retort dse index --faiss KIND``, read by ``retort dse search``):
exact, or approximate for candidate sets too large to scan per query, with the approximation's cost stated.

Kinds (package faiss-cpu, the optional extra ``search``):

- ``flat``: exact inner product of L2-normalised vectors (``IndexFlatIP``); the reference.
- ``hnsw``: a graph (``IndexHNSWFlat``, inner product), ``M`` links a node, ``efConstruction`` when built,
  ``efSearch`` when searched; memory about N x (4 D + 8 M) bytes beside the matrix. efSearch 256: over a million
  corpus passages (``experiments/search_scale.py``, docs/results.md) 128 found 0.92 of the exact top 10, 256
  0.95 in 0.8 ms a query on two cores.
- ``ivfpq``: an inverted file of ``nlist`` cells over product-quantised codes (``IndexIVFPQ``, ``m`` sub-vectors
  of ``nbits``), trained on a sample of the candidates; ``nprobe`` cells searched a query; memory about N x m
  bytes. Its codes only propose: the ``RERANK`` x k best by code are re-ranked by exact cosine over the index
  folder's own matrix (codes alone found a third of the exact top 10 over a million passages). Needs at least
  ``MIN_IVFPQ`` candidates to train its codebooks.

Every approximate index is measured when built: recall@10 against exact search, over up to
``RECALL_QUERIES`` candidates drawn as queries (each query's own row left out of both lists), written into
``index.json`` with the parameters, the build time and the index file's size.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from retort.errors import RetortError

KINDS = ("flat", "hnsw", "ivfpq")
FILE = "cosine.faiss"
HNSW = {"M": 32, "efConstruction": 80, "efSearch": 256}
RERANK = 10  # ivfpq: candidates proposed by the codes per result, re-ranked exactly (``reranked``)
IVFPQ = {"nbits": 8, "nprobe": 32}
MIN_IVFPQ = 10_000
RECALL_QUERIES = 1000


def faiss_module():
    """The ``faiss`` package, or one line saying how to install it."""
    try:
        import faiss  # noqa: PLC0415  (optional)
    except ImportError:
        raise RetortError("--faiss needs the faiss-cpu package (pip install 'retort[search]')") from None
    return faiss


def normalised(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, contiguous): inner products are then cosines."""
    return np.ascontiguousarray(emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12), dtype=np.float32)


def check_kind(kind: str, count: int) -> None:
    """Refuse, before anything is embedded, a kind this many candidates cannot train."""
    if kind not in KINDS:
        raise RetortError(f"--faiss {kind}: one of {', '.join(KINDS)}")
    if kind == "ivfpq" and count < MIN_IVFPQ:
        raise RetortError(f"--faiss ivfpq: {count} candidates; its codebooks need at least {MIN_IVFPQ:,} (use hnsw)")
    faiss_module()


def build(kind: str, emb: np.ndarray, folder: Path, seed: int = 0) -> dict:
    """Write ``folder/cosine.faiss`` of ``kind`` over ``emb`` and return its record: kind, parameters, build
    seconds, file bytes and, for an approximate kind, recall@10 against exact search."""
    faiss = faiss_module()
    x = normalised(emb)
    n, dim = x.shape
    start = time.perf_counter()
    params: dict = {}
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        params = dict(HNSW)
        index = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["efConstruction"]
    else:
        m = next(k for k in (dim // 8, dim // 4, dim // 2, dim) if k and dim % k == 0)  # 8-d sub-vectors, if even
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants 39+ training points a cell
        params = {"nlist": nlist, "m": m, **IVFPQ}
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, params["nbits"], faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(n, size=min(n, max(256 * 40, nlist * 40)), replace=False)
        index.train(x[np.sort(sample)])
    index.add(x)
    configure(index, kind, params)
    seconds = time.perf_counter() - start
    faiss.write_index(index, str(folder / FILE))
    record = {"kind": kind, "params": params, "build_seconds": round(seconds, 3),
              "bytes": (folder / FILE).stat().st_size}  # fmt: skip
    if kind != "flat":
        record["recall_at_10"] = recall_at_10(index, x, seed, exact=x if reranked(kind) else None)
    return record


def reranked(kind: str) -> bool:
    """Whether an index of ``kind`` only proposes, ``top_k`` re-ranking its proposals over the exact matrix."""
    return kind == "ivfpq"


def configure(index, kind: str, params: dict) -> None:
    """The search-time parameters of a loaded or new index (not all are kept in its file)."""
    if kind == "hnsw":
        index.hnsw.efSearch = params["efSearch"]
    elif kind == "ivfpq":
        index.nprobe = params["nprobe"]


def recall_at_10(index, x: np.ndarray, seed: int = 0, exact: np.ndarray | None = None) -> dict:
    """Recall@10 of ``index`` (re-ranked over ``exact`` when given, as ``top_k``) against exact search, with up
    to ``RECALL_QUERIES`` of the candidates as queries (each one's own row left out of both top-10 lists)."""
    n = len(x)
    queries = np.sort(np.random.default_rng(seed).choice(n, size=min(n, RECALL_QUERIES), replace=False))
    k = min(11, n)
    approx = np.stack([_padded(top_k(index, x[q], k, exact)[1], k) for q in queries])
    _, exact = faiss_module().knn(x[queries], x, k, metric=faiss_module().METRIC_INNER_PRODUCT)  # exact, no copy
    hits = total = 0
    for q, a, e in zip(queries, approx, exact):
        truth = [i for i in e if i != q][:10]
        found = {i for i in a if i != q}
        hits += len(found & set(truth))
        total += len(truth)
    return {"recall": hits / total if total else 1.0, "queries": int(len(queries))}


def load(folder: Path, record: dict):
    """The index file of an index folder, its search parameters set."""
    faiss = faiss_module()
    path = folder / FILE
    if not path.is_file():
        raise RetortError(f"{folder}: {FILE} is missing (build the index again with 'retort dse index --faiss')")
    index = faiss.read_index(str(path))
    configure(index, record["kind"], record.get("params") or {})
    return index


def top_k(index, query: np.ndarray, k: int, exact: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cosines, rows) of the ``k`` nearest candidates of one query embedding, best first. With ``exact`` (the
    normalised candidate matrix), ``RERANK`` x k proposals are re-ranked by their exact cosines (ivfpq)."""
    q = normalised(query[None])
    scores, rows = index.search(q, k * RERANK if exact is not None else k)
    keep = rows[0] >= 0  # faiss pads with -1 when fewer than k are found
    scores, rows = scores[0][keep], rows[0][keep]
    if exact is not None:
        scores = exact[rows] @ q[0]
        best = np.argsort(-scores, kind="stable")[:k]
        scores, rows = scores[best], rows[best]
    return scores, rows


def _padded(rows: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([rows, np.full(k - len(rows), -1, dtype=np.int64)]) if len(rows) < k else rows
