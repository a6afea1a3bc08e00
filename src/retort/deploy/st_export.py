"""``retort export`` of a sentence-transformers folder: the sentences that check and calibrate its graph, what
its export record says, and its evaluation.

Such a folder (``models/st_folder.py``) is a bi-encoder with no task and no pair head: its export serves
``retort dse index/search`` and ``runtime.OnnxModel.embed`` by cosine only. With no head there is no dev
score to compare, so the evaluation embeds sentences through the export folder as shipped (onnxruntime, its
own tokenizer) and through ``SentenceTransformer.encode`` on the source, and records how far the vectors
differ. An fp32 export whose vectors differ by more than ``VECTOR_TOLERANCE`` is refused (the tokenizer,
truncation or a module was not reproduced); an int8 one is reported, not gated (``--max-drop`` is for task
scores and is refused here). The sentences are those of ``--task``/``--data`` where given (training rows
for the checks and calibration, dev rows for the evaluation), else ``SAMPLE_SENTENCES``.
"""

from __future__ import annotations

import numpy as np

from retort.data.tasks import load_split
from retort.deploy import runtime, vectors
from retort.errors import RetortError

VECTOR_TOLERANCE = 1e-3
NO_HEAD = "no pair head: its vectors are scored by cosine"
SAMPLE_SENTENCES = (
    "A man is playing a guitar.",
    "The cat sleeps on the red sofa.",
    "Stock markets fell sharply on Monday after the announcement.",
    "How do I reset my password?",
    "Two dogs run across a snowy field while their owner watches from the road.",
    "Rain.",
    "The committee will publish its final report next spring, after the public consultation closes.",
    "She quickly ate the food and went back to the small house by the river.",
    "Is it safe to drink tap water in this city?",
    "The new model is faster, smaller and almost as accurate as the old one.",
    "A child plays the piano in a very big and quiet room.",
    "Where is the nearest train station?",
    " ".join(["This long sentence keeps going so that the tokenizer has to cut it at the maximum length,"] * 12),
    "Good morning!",
    "The river runs slowly past the old city walls, under three bridges and a railway line.",
    "Not bad at all.",
)


def sentences(task, glue_dir, split: str, limit: int) -> tuple[list[str], str]:
    """Up to ``limit`` distinct texts (each side of a pair) of ``task``'s ``split`` in file order, or
    ``SAMPLE_SENTENCES`` when ``task`` is None; and where they came from, in words."""
    if task is None:
        return list(SAMPLE_SENTENCES[:limit]), "built-in sample sentences"
    rows = load_split(task, split, glue_dir, max_samples=limit).examples
    texts = list(dict.fromkeys(t for ex in rows for t in ex.texts))[:limit]
    if not texts:
        raise RetortError(f"{task.name} {split}: no rows to check the export on")
    return texts, f"{task.name} {split}"


def record_fields(parts, model) -> dict:
    """What an export record says of a sentence-transformers source: no task, no labels, no pair head,
    cosine scoring, and the folder's modules, pooling, width and normalisation."""
    return {
        "task": None,
        "regression": False,
        "multi_label": False,
        "text_pair": False,
        "num_labels": None,
        "label_names": [],
        "source_format": "sentence-transformers",
        "modules": list(parts.modules),
        "pooling": parts.pooling,
        "embedding_dim": model.embedding_dim,
        "normalized": parts.normalize,
        "pair_head": False,
        "score": "cosine",
        "note": f"a sentence-transformers model: {NO_HEAD}",
    }


def compare_vectors(folder, model, texts: list[str], where: str, quantization: str, threads, log) -> dict:
    """The export folder's vectors (onnxruntime, as shipped) against ``model.encode`` (sentence-transformers on
    the source) on ``texts``: the largest absolute difference and the cosines, logged; an fp32 export past
    ``VECTOR_TOLERANCE`` is refused. Returns the record's ``evaluation`` entry."""
    ref = np.asarray(model.encode(texts), dtype=np.float32)
    got = runtime.OnnxModel(folder, threads).embed(texts)
    diff = float(np.abs(ref - got).max())
    cos = (vectors.normalised(ref) * vectors.normalised(got)).sum(1)
    log(f"[export] vectors against SentenceTransformer.encode on {len(texts)} sentences ({where}), "
        f"{quantization}: max abs diff {diff:.2e}, cosine mean {cos.mean():.4f}, min {cos.min():.4f}")  # fmt: skip
    if quantization == "none" and diff > VECTOR_TOLERANCE:
        raise RetortError(
            f"export refused: its vectors differ from SentenceTransformer.encode by {diff:.2e} on {where} "
            f"(more than {VECTOR_TOLERANCE}); nothing written"
        )
    return {
        "what": "the export's vectors against SentenceTransformer(source).encode ("
        + NO_HEAD
        + ", no task score to compare)",
        "sentences": len(texts),
        "from": where,
        "max_abs_diff": diff,
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
        "tolerance": VECTOR_TOLERANCE if quantization == "none" else None,
    }
