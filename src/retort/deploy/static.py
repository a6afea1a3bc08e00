"""Static embeddings distilled from a sentence-transformers teacher (Model2Vec, ``retort embed static``): every
token of the teacher's vocabulary is passed through the teacher once, the outputs are reduced by PCA and
weighted (Zipf), and a sentence is the mean of its tokens' vectors: no encoder at inference, a table lookup.
The frontier's cheap end, to compare students against (``retort embed eval``).

Model2Vec (the optional extra ``static``: ``model2vec`` and ``skeletoken``) is installed without its
``distill`` extra, whose ``transformers<5.4`` pin would downgrade the lock (transformers 5.23, and
huggingface_hub with it, after which retort no longer imports); its distillation code runs on the locked
versions (measured: docs/results.md, issue #31).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from retort.errors import RetortError
from retort.outputs import check_output, local
from retort.paths import publish_dir

RECORD = "retort_static.json"


def model2vec_distill():
    """``model2vec.distill.distill``, or one line saying how to install it."""
    try:
        from model2vec.distill import distill  # noqa: PLC0415  (optional, imports torch and transformers)
    except ImportError as e:
        raise RetortError(
            f"retort embed static needs model2vec and skeletoken (pip install 'retort[static]'): {e}"
        ) from None
    return distill


def distill_static(teacher: str, out: str, dims: int = 256) -> dict:
    """Distil ``teacher`` (a sentence-transformers or Hugging Face encoder folder) into a Model2Vec folder ``out``
    (written whole under a temporary name, then renamed) with ``dims``-dimensional PCA vectors; returns the
    record kept in ``out/retort_static.json``."""
    folder = Path(teacher)
    if not (folder / "config.json").is_file():
        raise RetortError(f"--model {teacher}: not a model folder (no config.json)")
    check_output(out, "--out", reads=[local(teacher, "the teacher")], folder=True, makes="model")
    distill = model2vec_distill()
    start = time.perf_counter()
    model = distill(model_name=str(folder.resolve()), pca_dims=dims)
    seconds = time.perf_counter() - start
    final = Path(out)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp))
        record = {"teacher": str(folder.resolve()), "dims": int(model.dim), "vocabulary": len(model.tokens),
                  "seconds": round(seconds, 1), "method": "model2vec.distill (PCA, Zipf weighting)"}  # fmt: skip
        (tmp / RECORD).write_text(json.dumps(record, indent=2))
        publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def is_static_folder(folder) -> bool:
    """A Model2Vec folder (``retort embed static`` writes one; Model2Vec's own have ``model_type`` model2vec)."""
    path = Path(folder)
    if (path / RECORD).is_file():
        return True
    try:
        return json.loads((path / "config.json").read_text()).get("model_type") == "model2vec"
    except (OSError, ValueError, AttributeError):
        return False
