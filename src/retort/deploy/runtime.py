"""Serving an exported model (``retort export``) with onnxruntime, tokenizers and numpy alone.

Nothing here imports torch or transformers: a deployment needs only ``onnxruntime``, ``tokenizers`` and
``numpy``. ``retort eval`` of an export folder (``evaluation.folder.evaluate_folder``, the one evaluation
path of PyTorch and export folders) predicts through ``OnnxModel.predict``; ``tests/test_export.py`` runs
it in a fresh process and checks that ``torch`` never entered ``sys.modules``.

An export folder holds:

    model.onnx            the graph (inputs input_ids, attention_mask, token_type_ids: int64 (B, T))
    tokenizer.json        the fast tokenizer (plus the tokenizer's other files, for transformers users)
    head.safetensors      DSE bi-encoders only: the pair head (scale/shift or a linear layer), numpy-readable
    retort_export.json    what it is: kind, task, label names, opset, quantisation, versions, sha256

A classifier's graph outputs ``logits`` (B, C) ((B, 1) for regression). A bi-encoder's graph outputs
``embeddings`` (B, D) for single sentences; the pair head runs here in numpy, so candidate embeddings can
be computed once (``retort dse index``) and a query costs one encoder pass. A sentence-transformers model's
export is a bi-encoder with no task and no pair head (its record says ``"pair_head": false``): it embeds,
and its vectors are scored by cosine only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retort.errors import RetortError
from retort.paths import sha256_file
from retort.progress import tracked
from retort.rows import in_row_order

META_NAME = "retort_export.json"
MODEL_NAME = "model.onnx"
HEAD_NAME = "head.safetensors"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def is_export_folder(path) -> bool:
    """Whether ``path`` is a folder ``retort export`` wrote (it holds the export record)."""
    return (Path(path) / META_NAME).is_file()


sha256 = sha256_file  # the export record's checksum of model.onnx


def has_pair_head(meta: dict) -> bool:
    """Whether an export record's model scores pairs with a head: a DSE bi-encoder's (records before
    ``pair_head`` was written are DSE ones); a sentence-transformers model's export has none."""
    return meta.get("kind") == "biencoder" and meta.get("pair_head", True) is not False


def embeds_only(meta: dict) -> bool:
    """Whether an export record's model only embeds: a bi-encoder with no pair head (a sentence-transformers
    model's export), whose vectors are compared by cosine; it has no task to score or predict."""
    return meta.get("kind") == "biencoder" and not has_pair_head(meta)


def read_meta(folder, verify: bool = False) -> dict:
    """The export's record, checked: the JSON parses, names a kind, and the files it needs are there
    (``verify``: the ONNX file's sha256 matches the one recorded at export)."""
    folder = Path(folder)
    path = folder / META_NAME
    try:
        meta = json.loads(path.read_text())
    except OSError as e:
        raise RetortError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise RetortError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(meta, dict) or meta.get("kind") not in ("classifier", "biencoder"):
        raise RetortError(f"{path}: not a retort export record (kind must be classifier or biencoder)")
    needed = [MODEL_NAME, "tokenizer.json"] + ([HEAD_NAME] if has_pair_head(meta) else [])
    for name in needed:
        if not (folder / name).is_file():
            raise RetortError(f"{folder}: {name} is missing (export again with 'retort export')")
    if verify and meta.get("sha256") and sha256(folder / MODEL_NAME) != meta["sha256"]:
        raise RetortError(f"{folder / MODEL_NAME}: sha256 differs from the one in {META_NAME} (file changed)")
    return meta


class TextEncoder:
    """The model's fast tokenizer (``tokenizers``), truncating like transformers' ``truncation=True``
    (longest first), padding each batch to its own longest member."""

    def __init__(self, folder, max_length: int = 128, pad_id: int | None = None):
        from tokenizers import Tokenizer  # noqa: PLC0415

        path = Path(folder) / "tokenizer.json"
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises its own Exception subclass with the reason
            raise RetortError(
                f"{path}: cannot load the tokenizer ({str(e).splitlines()[0] if str(e) else e})"
            ) from None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length, strategy="longest_first")
        self.max_length = max_length
        if pad_id is None:
            pad = self.tokenizer.token_to_id("[PAD]")
            if pad is None:
                pad = self.tokenizer.token_to_id("<pad>")
            pad_id = pad or 0
        self.pad_id = pad_id

    def encode(self, examples: list[tuple[str, ...]]) -> list:
        """One ``tokenizers`` encoding per example (a 1-tuple is a single text, a 2-tuple a pair), unpadded."""
        inputs = [ex[0] if len(ex) == 1 else (ex[0], ex[1]) for ex in examples]
        return self.tokenizer.encode_batch(inputs)

    def pad(self, encodings: list) -> dict[str, np.ndarray]:
        """int64 arrays (B, T) named as the graph's inputs."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            types[row, :n] = e.type_ids
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def __call__(self, examples: list[tuple[str, ...]]) -> dict[str, np.ndarray]:
        """Examples encoded and padded: the graph's int64 (B, T) inputs."""
        return self.pad(self.encode(examples))


def session(path, threads: int | None = None):
    """An onnxruntime CPU session with every graph optimisation on and ``threads`` intra-op threads."""
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types (InvalidGraph, Fail, ...)
        raise RetortError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None


def _length_order(lengths: list[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def as_examples(inputs, pair: bool | None = None) -> list[tuple[str, ...]]:
    """Plain inputs as examples: each a text (a 1-tuple) or a pair of texts (a 2-tuple); a bare string is one
    text. ``pair`` (when known) is whether the model reads pairs: an input of the other kind is refused."""
    if isinstance(inputs, str) or isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(x, str)
                                                                                          for x in inputs):  # fmt: skip
        inputs = [inputs]
    out = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            ex = (item,)
        elif isinstance(item, (tuple, list)) and 1 <= len(item) <= 2 and all(isinstance(x, str) for x in item):
            ex = tuple(item)
        else:
            raise RetortError(f"input {i}: {type(item).__name__} {str(item)[:40]!r}; give a text or a pair of texts")
        if pair is not None and (len(ex) == 2) != pair:
            want = "a pair of texts (a, b)" if pair else "a single text"
            raise RetortError(f"input {i}: this model reads {want}, not {'a pair' if len(ex) == 2 else 'one text'}")
        out.append(ex)
    return out


def named_predictions(logits: np.ndarray, label_names: list[str], regression: bool, multi_label: bool) -> list[dict]:
    """Logits (N, C) as what a user reads: ``{"score": s}`` for regression; ``{"labels": [...],
    "probabilities": {name: p}}`` for multi-label (per-label sigmoids, the labels above one half); else
    ``{"label": name, "score": p, "probabilities": {name: p}}`` (softmax)."""
    logits = np.asarray(logits, dtype=np.float64)
    if regression:
        return [{"score": float(z[0])} for z in logits]
    if multi_label:
        probs = 1.0 / (1.0 + np.exp(-logits))
        return [{"labels": [n for n, p in zip(label_names, row) if p > 0.5],
                 "probabilities": {n: float(p) for n, p in zip(label_names, row)}} for row in probs]  # fmt: skip
    z = np.exp(logits - logits.max(-1, keepdims=True))
    probs = z / z.sum(-1, keepdims=True)
    return [{"label": label_names[int(row.argmax())], "score": float(row.max()),
             "probabilities": {n: float(p) for n, p in zip(label_names, row)}} for row in probs]  # fmt: skip


class OnnxModel:
    """An export folder, ready to run: ``predict(texts or pairs)`` for label names with probabilities (or
    scores), ``predict_logits(examples)`` for classifiers and bi-encoders alike, ``embed(texts)`` and
    ``score(u, v)`` for bi-encoders."""

    def __init__(self, folder, threads: int | None = None, max_length: int | None = None):
        """Open the export ``folder`` (checked: ``read_meta``); ``max_length`` None: the export's own."""
        self.folder = Path(folder)
        self.meta = read_meta(folder)
        self.kind = self.meta["kind"]
        self.regression = bool(self.meta.get("regression"))
        self.max_length = max_length or int(self.meta.get("max_length", 128))
        limit = int(self.meta.get("max_positions", 512))
        if not 2 <= self.max_length <= limit:
            raise RetortError(f"--max-length {self.max_length}: must be between 2 and {limit} for {folder}")
        self.encoder = TextEncoder(folder, self.max_length, self.meta.get("pad_token_id"))
        self.session = session(self.folder / MODEL_NAME, threads)
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.head = self._load_head() if has_pair_head(self.meta) else None

    def _load_head(self) -> dict[str, np.ndarray]:
        from safetensors.numpy import load_file  # noqa: PLC0415

        try:
            return load_file(str(self.folder / HEAD_NAME))
        except Exception as e:  # safetensors raises SafetensorError for a broken file
            raise RetortError(f"{self.folder / HEAD_NAME}: cannot read ({e})") from None

    @property
    def task(self) -> str | None:
        """The GLUE task the model was exported for, if the record names one."""
        return self.meta.get("task")

    @property
    def label_names(self) -> list[str]:
        """The task's class names in logit order (``["score"]`` for regression)."""
        return list(self.meta.get("label_names") or [])

    @property
    def pooling(self) -> str | None:
        """A bi-encoder's pooling (``mean`` or ``cls``); None for a classifier."""
        return self.meta.get("pooling")

    @property
    def embedding_dim(self) -> int:
        """A bi-encoder's sentence embedding width D."""
        return int(self.meta["embedding_dim"])

    @property
    def file_bytes(self) -> int:
        """The size of ``model.onnx`` on disk."""
        return (self.folder / MODEL_NAME).stat().st_size

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The graph's output for padded inputs (those of ``feeds`` the graph does not read are dropped)."""
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]

    # ---- classifiers (and bi-encoders scoring pairs)

    def logits(self, examples: list[tuple[str, ...]]) -> np.ndarray:
        """One batch of examples (a pair is a 2-tuple) -> (B, C) logits, (B, 1) for regression."""
        if self.kind == "classifier":
            return self.run(self.encoder(examples))
        self._require_head()
        u = self.embed_batch([ex[0] for ex in examples])
        v = self.embed_batch([ex[1] for ex in examples])
        return self.score(u, v)

    def predict_logits(
        self, examples: list[tuple[str, ...]], batch_size: int = 128, desc: str | None = None
    ) -> np.ndarray:
        """Logits for every example (a 1-tuple or a pair), in order, batched by length (progress under
        ``desc`` if given)."""
        encs = self.encoder.encode(examples) if examples else []

        def parts():
            for idx in tracked(_length_order([len(e.ids) for e in encs], batch_size), desc):
                if self.kind == "classifier":  # the encodings made for the order are the inputs too
                    yield idx, self.run(self.encoder.pad([encs[i] for i in idx]))
                else:  # a bi-encoder embeds each side alone
                    yield idx, self.logits([examples[i] for i in idx])

        return in_row_order(parts(), len(examples))

    def predict(self, inputs, batch_size: int = 128, desc: str | None = None, raw: bool = False):
        """What the model says of each input: a text, or a pair of texts as a 2-tuple or list (a bare string
        is one input). Returns one dict per input (``named_predictions``): the label and its probability plus
        every label's, the labels above one half for a multi-label task, the score for regression; with
        ``raw`` the logits (N, C) instead."""
        examples = as_examples(inputs, self.meta.get("text_pair"))
        logits = self.predict_logits(examples, batch_size, desc)
        if raw:
            return logits
        return named_predictions(logits, self.label_names, self.regression, bool(self.meta.get("multi_label")))

    # ---- bi-encoders

    def _require_biencoder(self) -> None:
        if self.kind != "biencoder":
            raise RetortError(f"{self.folder}: a {self.kind} export has no sentence embeddings (export a DSE model)")

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """(B, D) float32 embeddings of one batch of texts (bi-encoders only)."""
        self._require_biencoder()
        return self.run(self.encoder([(t,) for t in texts])).astype(np.float32, copy=False)

    def embed(self, texts: list[str], batch_size: int = 128, desc: str | None = None) -> np.ndarray:
        """(N, D) embeddings in the order of ``texts`` (progress under ``desc`` if given)."""
        self._require_biencoder()
        encs = self.encoder.encode([(t,) for t in texts])
        out = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        for idx in tracked(_length_order([len(e.ids) for e in encs], batch_size), desc):
            out[idx] = self.run(self.encoder.pad([encs[i] for i in idx]))
        return out

    def _require_head(self) -> None:
        if self.head is None:
            self._require_biencoder()
            raise RetortError(f"{self.folder}: a sentence-transformers export has no pair head; score its vectors "
                              "by cosine (dse search --score cosine)")  # fmt: skip

    def score(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The pair head on (B, D), (B, D) -> (B, C) or (B, 1), as ``BiEncoder.score``; an export with no pair
        head (a sentence-transformers model's) is one line naming cosine."""
        self._require_head()
        if self.regression:
            nu = np.linalg.norm(u, axis=-1).clip(1e-8)
            nv = np.linalg.norm(v, axis=-1).clip(1e-8)
            cos = (u * v).sum(-1) / (nu * nv)
            return (self.head["scale"] * cos + self.head["shift"])[:, None].astype(np.float32)
        x = np.concatenate([u, v, u * v, np.abs(u - v)], axis=-1)
        return (x @ self.head["head.weight"].T + self.head["head.bias"]).astype(np.float32)

    def score_against(self, query: np.ndarray, candidates: np.ndarray, label: int | None = None) -> np.ndarray:
        """(N,) scores of one query embedding (D,) against (N, D) candidates: the score for regression,
        else the probability of class ``label``."""
        logits = self.score(np.broadcast_to(query, candidates.shape), candidates)
        if self.regression:
            return logits[:, 0]
        z = np.exp(logits - logits.max(-1, keepdims=True))
        return z[:, label] / z.sum(-1)

    def default_label(self) -> int | None:
        """The class that means 'a match': entailment for NLI tasks (label 0), else the positive class 1;
        None for regression and for an export with no pair head."""
        if self.regression or self.head is None:
            return None
        return 0 if self.task in ("MNLI", "QNLI", "RTE") else 1
