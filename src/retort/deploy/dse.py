"""Distilled sentence embeddings at serving time: precompute candidate embeddings once
(``retort dse index``), then score a query against all of them (``retort dse search``) with one
encoder pass plus N cheap vector operations in the pair head.

An index is a folder: ``embeddings.safetensors`` (N, D) float32, ``candidates.txt`` (one per line, as
given) and ``index.json`` (the model folder, pooling, dimension). With ``--faiss KIND`` (package faiss-cpu) a
FAISS index of the L2-normalised embeddings is written too (``deploy/vectors.py``: exact ``flat``, or
approximate ``hnsw`` or ``ivfpq`` with its recall@10 against exact search measured when built), and search
by cosine reads it.

Two scores, one per question (``--score``):

- ``cosine`` (the default): cosine similarity of the two embeddings. It is what the model gives anywhere
  else: the sentence-transformers export (``retort dse export``, ``SentenceTransformer.similarity``), a
  vector database, FAISS. Search and export rank alike.
- ``pair``: the bi-encoder's pair head on (u, v, |u-v|, u*v), the head the cross-encoder teacher's scores were
  distilled into (a regression score, or the probability of the matching class). It is closer to the
  teacher on the task it was trained for, but exists only in retort's folder, so its ranking can differ
  from the export's; it scores every candidate exactly (one matrix pass, no FAISS).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from retort.deploy import runtime, vectors
from retort.errors import RetortError
from retort.models.check import check_model_folder, is_st_folder
from retort.outputs import check_output, local
from retort.paths import publish_dir, saving


def load_biencoder(model_dir: str):
    """A PyTorch ``BiEncoder`` and its tokenizer from a ``retort dse train`` folder (checked by the caller)."""
    from retort.models.biencoder import BiEncoder, is_dse_folder  # noqa: PLC0415
    from retort.models.hf import load_tokenizer  # noqa: PLC0415

    if not is_dse_folder(model_dir):
        raise RetortError(f"{model_dir}: not a DSE bi-encoder folder (train one with 'retort dse train')")
    return BiEncoder.from_pretrained(model_dir), load_tokenizer(model_dir)


def score_against(model, query: np.ndarray, candidates: np.ndarray, label: int | None = None, chunk: int = 65536):
    """Scores (N,) of one query embedding (D,) against candidate embeddings (N, D) with the pair head:
    the predicted score for regression, else the probability of class ``label``."""
    import torch  # noqa: PLC0415

    q = torch.from_numpy(query).float()[None]
    scores = []
    with torch.inference_mode():
        for s in range(0, len(candidates), chunk):
            c = torch.from_numpy(candidates[s : s + chunk]).float()
            logits = model.score(q.expand(len(c), -1), c)
            scores.append(logits[:, 0] if model.regression else torch.softmax(logits, -1)[:, label])
    return torch.cat(scores).numpy() if scores else np.zeros(0, dtype=np.float32)


def default_label(model) -> int | None:
    """The class that means 'a match': entailment for NLI tasks (label 0), else the positive class 1."""
    if model.regression:
        return None
    task = getattr(model.encoder.config, "retort_task", None)
    return 0 if task in ("MNLI", "QNLI", "RTE") else 1


class TorchEmbedder:
    """A PyTorch bi-encoder behind the same three calls as ``runtime.OnnxModel``."""

    def __init__(self, model_dir: str, threads: int | None = None):
        if threads:
            import torch  # noqa: PLC0415

            torch.set_num_threads(threads)
        self.model, self.tokenizer = load_biencoder(model_dir)
        self.pooling = self.model.pooling
        self.embedding_dim = self.model.embedding_dim

    def embed(self, texts: list[str], batch_size: int = 128, desc: str | None = None) -> np.ndarray:
        """(N, D) embeddings in the order of ``texts`` (progress under ``desc`` if given)."""
        from retort.models.biencoder import embed_texts  # noqa: PLC0415  (torch: only for PyTorch folders)

        return embed_texts(self.model, self.tokenizer, texts, batch_size, desc=desc)

    def score_against(self, query: np.ndarray, candidates: np.ndarray, label: int | None = None) -> np.ndarray:
        """(N,) scores of one query embedding (D,) against (N, D) candidates (``score_against``)."""
        return score_against(self.model, query, candidates, label)

    def default_label(self) -> int | None:
        """The class that means 'a match' (``default_label``); None for regression."""
        return default_label(self.model)


class SentenceTransformerEmbedder:
    """A sentence-transformers folder (``retort dse export``'s or ``retort embed distill``'s output, or any
    other) behind the same calls: it has no pair head, so it scores by cosine only."""

    pooling = "sentence-transformers"

    def __init__(self, model_dir: str, threads: int | None = None):
        import torch  # noqa: PLC0415  (sentence-transformers runs on PyTorch)
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415

        if threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(model_dir, device="cpu")
        self.embedding_dim = self.model.get_embedding_dimension()

    def embed(self, texts: list[str], batch_size: int = 128, desc: str | None = None) -> np.ndarray:
        """(N, D) embeddings in the order of ``texts``."""
        return np.asarray(self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True), dtype=np.float32)

    def score_against(self, query: np.ndarray, candidates: np.ndarray, label: int | None = None) -> np.ndarray:
        """No pair head: one line (``--score cosine`` is what this folder's vectors are for)."""
        raise RetortError("--score pair: a sentence-transformers folder has no pair head; rank by cosine")

    def default_label(self) -> None:
        """No classes."""
        return None


def load_embedder(model_dir: str, threads: int | None = None, option: str | None = "--model"):
    """An export folder (onnxruntime, no torch), a ``retort dse train`` folder (PyTorch) or a
    sentence-transformers folder, checked first (``models/check.py``; a run folder: its model) and named by
    ``option`` in any error."""
    if is_st_folder(model_dir):
        return SentenceTransformerEmbedder(model_dir, threads)
    model_dir = check_model_folder(model_dir, option, "bi-encoder")
    if runtime.is_export_folder(model_dir):
        model = runtime.OnnxModel(model_dir, threads)
        model._require_biencoder()
        return model
    return TorchEmbedder(model_dir, threads)


def check_index_out(out: Path, reads=()) -> None:
    """--out of 'dse index', by the output rule (``retort.outputs``): not the model or the candidates (nor
    a folder holding them), not inside a model or a run, writable, and either new, empty or an index
    (rebuilt), nothing else."""
    check_output(out, "--out", reads=reads, folder=True, makes="index")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.json").is_file():
        raise RetortError(f"--out {out}: holds files that are not a retort index; choose a new or empty folder")


def build_index(
    model_dir: str, candidates_file: str, out: str, batch_size: int = 128, faiss: str | None = None, threads=None
) -> dict:
    """``retort dse index``: embed every non-blank line of ``candidates_file`` once and write the index
    folder ``out`` (whole, under a temporary name first: a failed write leaves neither it nor ``OUT.tmp``);
    returns its ``index.json`` record."""
    try:
        texts = [line.rstrip("\n") for line in Path(candidates_file).read_text(encoding="utf-8").splitlines()]
    except OSError as e:
        raise RetortError(f"{candidates_file}: cannot read candidates ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise RetortError(f"{candidates_file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise RetortError(f"{candidates_file}: no candidates (one sentence per line)")
    check_index_out(Path(out), [local(model_dir, "the model"), local(candidates_file, "the candidates")])
    if faiss:
        vectors.check_kind(faiss, len(texts))  # before the candidates are embedded
    model = load_embedder(model_dir, threads)
    emb = model.embed(texts, batch_size, desc="dse index: embedding candidates")
    final = Path(out)
    path = final.with_name(final.name + ".tmp")  # written whole under a temporary name, then renamed
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    meta = {"model": str(Path(model_dir).resolve()), "count": len(texts), "dim": int(emb.shape[1]),
            "pooling": model.pooling, "faiss": faiss}  # fmt: skip
    try:
        with saving(path):  # a full disk (SafetensorError included) is an OSError naming the folder
            _write_index(path, emb, texts, meta)
        publish_dir(path, final)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return meta


def _write_index(path: Path, emb: np.ndarray, texts: list[str], meta: dict) -> None:
    """The files of an index folder (see the module docstring) into ``path``."""
    from safetensors.numpy import save_file  # noqa: PLC0415

    save_file({"embeddings": emb}, str(path / "embeddings.safetensors"))
    (path / "candidates.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    if meta["faiss"]:
        meta["faiss"] = vectors.build(meta["faiss"], emb, path)  # the kind, its parameters, recall, time, size
    (path / "index.json").write_text(json.dumps(meta, indent=2))


def load_index(index_dir: str) -> tuple[dict, np.ndarray, list[str]]:
    """An index folder read and checked: its record, the (N, D) embeddings and the N candidate texts."""
    path = Path(index_dir)
    if not (path / "index.json").is_file():
        raise RetortError(f"{index_dir}: not an index folder (build one with 'retort dse index')")
    from safetensors.numpy import load_file  # noqa: PLC0415

    try:
        meta = json.loads((path / "index.json").read_text())
    except ValueError as e:
        raise RetortError(f"{path / 'index.json'}: not valid JSON ({e})") from None
    for name in ("embeddings.safetensors", "candidates.txt"):
        if not (path / name).is_file():
            raise RetortError(f"{index_dir}: {name} is missing (build the index again with 'retort dse index')")
    try:
        emb = load_file(str(path / "embeddings.safetensors"))["embeddings"]
    except Exception as e:  # SafetensorError (truncated, not safetensors) or KeyError (another tensor name)
        raise RetortError(
            f"{path / 'embeddings.safetensors'}: not an index matrix ({str(e).splitlines()[0]})"
        ) from None
    texts = (path / "candidates.txt").read_text(encoding="utf-8").splitlines()
    if emb.ndim != 2 or len(texts) != emb.shape[0] or meta.get("count", len(texts)) != len(texts):
        raise RetortError(
            f"{index_dir}: {len(texts)} candidates but {emb.shape[0]} embeddings (index.json says {meta.get('count')})"
        )
    return meta, emb, texts


def search(
    index_dir: str, queries: list[str], k: int = 10, model_dir: str | None = None, threads=None, score: str = "cosine"
) -> tuple[list[list[dict]], str]:
    """Top-k candidates for each query by ``score`` (see the module docstring): cosine through the index's
    FAISS file when it has one, else exactly over the matrix; the pair head always exactly. Returns them and
    the score's name."""
    meta, emb, texts = load_index(index_dir)
    model = load_embedder(model_dir or meta["model"], threads, "--model" if model_dir else f"{index_dir}: its model")
    if emb.shape[1] != model.embedding_dim:
        raise RetortError(f"{index_dir}: embeddings are {emb.shape[1]}-d, the model makes {model.embedding_dim}-d")
    faiss = meta.get("faiss") if score == "cosine" else None
    index = vectors.load(Path(index_dir), faiss if isinstance(faiss, dict) else {"kind": "flat"}) if faiss else None
    rerank = isinstance(faiss, dict) and vectors.reranked(faiss.get("kind", ""))  # proposals, exact cosine ranks
    normed = vectors.normalised(emb) if score == "cosine" and (index is None or rerank) else None
    exact = normed if rerank else None
    label = model.default_label()
    results = []
    for row in model.embed(queries):
        if index is not None:
            scores, top = vectors.top_k(index, row, k, exact)
        else:
            all_scores = normed @ vectors.normalised(row[None])[0] if score == "cosine" else model.score_against(
                row, emb, label)  # fmt: skip
            top = np.argsort(-all_scores, kind="stable")[:k]
            scores = all_scores[top]
        results.append([{"rank": r + 1, "score": float(s), "index": int(i), "text": texts[i]}
                        for r, (s, i) in enumerate(zip(scores, top))])  # fmt: skip
    return results, score_name(score, label)


def score_name(score: str, label: int | None) -> str:
    """What the score column holds, in words."""
    if score == "cosine":
        return "cosine"
    return "pair head: score" if label is None else f"pair head: P(class {label})"


def export(model_dir: str, out: str) -> Path:
    """Write a trained bi-encoder's encoder in sentence-transformers format."""
    from retort.models.biencoder import export_sentence_transformers  # noqa: PLC0415

    dest = Path(out)
    check_output(dest, "--out", reads=[local(model_dir, "the model")], folder=True, makes="sentence-transformers model")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / "modules.json").is_file():
        raise RetortError(f"--out {dest}: holds files that are not a sentence-transformers model; choose a new folder")
    model_dir = check_model_folder(model_dir, "--model", "dse-source")  # a run folder: its model
    model, tok = load_biencoder(model_dir)
    return export_sentence_transformers(model, tok, out)
