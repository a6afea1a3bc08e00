"""Sentence-embedding models scored on STS-style data (``retort embed eval``): each pair's two texts embedded,
the cosine of the two vectors against the gold score, Spearman (the field's headline) and Pearson, beside the
mean-predictor's baseline. Any task spec with a pair and a regression label works (``--data``), STS-B by
default. No fine-tuning on the labels: the model as it is.

Three kinds of folder, one path: a sentence-transformers folder (``modules.json``; ``SentenceTransformer``),
a Model2Vec folder (``deploy/static.py``; ``StaticModel``) and a retort bi-encoder or its export
(``deploy/dse.py``'s embedder, onnxruntime for an export).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import stats

from retort.data.tasks import load_split
from retort.deploy import vectors
from retort.deploy.static import is_static_folder
from retort.errors import RetortError


def require_folder(folder: str) -> Path:
    """``folder`` as a path, refused in one line when it is no folder (checked before any data is read)."""
    path = Path(folder)
    if not path.is_dir():
        raise RetortError(f"--model {folder}: no such model folder")
    return path


def open_encoder(folder: str, threads: int | None = None):
    """(kind, encode, parameters) for a model folder: ``encode(texts, batch_size=64) -> (N, D) array``."""
    path = require_folder(folder)
    if is_static_folder(path):
        try:
            from model2vec import StaticModel  # noqa: PLC0415  (optional)
        except ImportError:
            raise RetortError(f"--model {folder}: a Model2Vec folder needs pip install 'retort[static]'") from None
        model = StaticModel.from_pretrained(str(path))
        size = int(np.asarray(model.embedding).size)
        return "model2vec", lambda texts, batch_size=64: np.asarray(model.encode(texts, batch_size=batch_size)), size
    from retort.deploy.dse import SentenceTransformerEmbedder, load_embedder  # noqa: PLC0415  (torch there)

    model = load_embedder(folder, threads)  # sentence-transformers, a retort bi-encoder or its export
    kind = "sentence-transformers" if isinstance(model, SentenceTransformerEmbedder) else "retort bi-encoder"
    size = sum(p.numel() for p in model.model.parameters()) if hasattr(model, "model") else None
    return kind, lambda texts, batch_size=64: model.embed(texts, batch_size), size


def speed(encode, texts: list[str], rounds: int = 3, single: int = 64, batched: int = 256) -> dict:
    """Milliseconds per sentence at batch 1 (``single`` sentences one at a time) and at batch 32 (``batched``
    sentences), each the least of ``rounds`` medians (noise only adds time), after one warm-up call; and
    sentences per second at batch 32."""
    encode(texts[:32], batch_size=32)  # warm-up
    one, many = [], []
    for _ in range(rounds):
        times = []
        for t in texts[:single]:
            start = time.perf_counter()
            encode([t], batch_size=1)
            times.append((time.perf_counter() - start) * 1000)
        one.append(float(np.median(times)))
        times = []
        for i in range(0, min(batched, len(texts)), 32):
            start = time.perf_counter()
            encode(texts[i : i + 32], batch_size=32)
            times.append((time.perf_counter() - start) * 1000 / len(texts[i : i + 32]))
        many.append(float(np.median(times)))
    return {"ms_per_sentence_b1": min(one), "ms_per_sentence_b32": min(many),
            "sentences_per_s_b32": 1000 / min(many), "rounds": rounds, "timed_b1": min(single, len(texts)),
            "timed_b32": min(batched, len(texts))}  # fmt: skip


def sts_scores(folder: str, task, split: str = "dev", glue_dir=None, threads: int | None = None,
               rounds: int = 3) -> dict:  # fmt: skip
    """Spearman and Pearson of the cosine of each pair's embeddings against the gold scores of ``task``'s
    ``split`` (a pair task with a regression label), with the number of pairs, the parameters and the speed
    (``speed``: the split's first sentences, in file order)."""
    if not (task.is_pair and task.is_regression):
        raise RetortError(f"{task.name}: embedding evaluation needs sentence pairs with a score (STS-style data)")
    rows = load_split(task, split, glue_dir)
    gold = np.asarray([ex.label for ex in rows.examples], dtype=float)
    if np.isnan(gold).any() or len(set(gold.tolist())) < 2:
        raise RetortError(f"{task.name} {split}: the split has no gold scores to compare with")
    kind, encode, parameters = open_encoder(folder, threads)
    texts = sorted({t for ex in rows.examples for t in ex.texts})
    start = time.perf_counter()
    emb = vectors.normalised(np.asarray(encode(texts)))
    seconds = time.perf_counter() - start
    at = {t: i for i, t in enumerate(texts)}
    a = emb[[at[ex.texts[0]] for ex in rows.examples]]
    b = emb[[at[ex.texts[1]] for ex in rows.examples]]
    cosine = (a * b).sum(1)
    return {"model": str(folder), "kind": kind, "task": task.name, "split": split, "pairs": len(gold),
            "spearman": float(stats.spearmanr(cosine, gold).statistic),
            "pearson": float(stats.pearsonr(cosine, gold).statistic), "dims": int(emb.shape[1]),
            "sentences": len(texts), "embed_seconds": round(seconds, 3), "parameters": parameters,
            "speed": speed(encode, list(dict.fromkeys(t for ex in rows.examples for t in ex.texts)), rounds),
            "baseline": "a constant score (the mean predictor) has no correlation: 0"}  # fmt: skip
