"""Sentence-embedding distillation (``retort embed distill``): a sentence-transformers teacher's vectors taught to
a smaller student by mean squared error on sentence vectors (Reimers & Gurevych 2020, "Making Monolingual
Sentence Embeddings Multilingual using Knowledge Distillation"; the recipe sentence-transformers' own
distillation examples use), plus an optional term on the in-batch cosine-similarity matrix (``pair_weight``:
the student's cosines between the batch's sentences against the teacher's).

- The teacher's vectors are computed once for the training sentences and cached
  (``cache_dir()/teacher_embeddings/KEY``, the key from the teacher folder's files and the texts), so a second
  run, another student or more epochs never run the teacher again.
- The student is pruned from the teacher's transformer (``models/prune.py``; ``LxH``), takes the teacher's
  mapped layers (``init="teacher"``, same width), is pruned to ``LxH`` from another model (``init`` a folder:
  a smaller sentence encoder is often the better start than a cut of a large teacher), or is any other
  transformers encoder folder as it is; the last two keep their own tokenizer: the loss is on sentence
  vectors, so the tokenizers need not match. A student narrower than the
  teacher's vectors learns a linear projection (a ``Dense`` module in the saved folder).
- The student's vectors are mean-pooled, projected when needed and L2-normalised when the teacher's are
  (its ``Normalize`` module), exactly as the saved sentence-transformers folder computes them.
- Epochs are chosen on sentences held out of training (mean cosine between student and teacher vectors; dev
  data is never read here).
- The output is a sentence-transformers folder (``SentenceTransformer(out)`` loads it), written whole under a
  temporary name and then renamed, with ``retort_embed.json`` saying how it was made.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from retort.cachedir import cache_dir, touch
from retort.errors import ConfigError, RetortError
from retort.models.biencoder import mean_pool
from retort.models.check import MODULES_FILE, is_st_folder
from retort.models.hf import load_tokenizer
from retort.models.outputs import Needs, forward
from retort.models.st_folder import StFolder, read_st_folder
from retort.models.student import StudentShape, build_student
from retort.paths import publish_dir, saving, sha256_file, write_atomic

CACHE_KIND = "teacher_embeddings"


def teacher_parts(folder: str | Path) -> StFolder:
    """A sentence-transformers teacher's parts (``models/st_folder.py``, which checks its modules, pooling and
    prompt); a folder that is not one, or pools otherwise than by mean, is one line."""
    if not is_st_folder(folder):
        raise RetortError(f"--teacher {folder}: not a sentence-transformers folder (no readable modules.json)")
    parts = read_st_folder(folder)
    if parts.pooling != "mean":
        raise RetortError(f"--teacher {folder}: pools by {parts.pooling}; the student pools by the mean over tokens")
    return parts


def teacher_vectors(folder: str | Path, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, bool]:
    """(N, D) float32 vectors of ``texts`` from the sentence-transformers teacher, from the cache when a run
    made them before (``CACHE_KIND``); True when they came from the cache."""
    root = Path(folder)
    key = hashlib.sha256()  # the folder's content (every module's files) and the texts
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        key.update(f"{f.relative_to(root)}:{sha256_file(f)}\n".encode())
    key.update("\n".join(texts).encode())
    entry = cache_dir() / CACHE_KIND / key.hexdigest()[:20]
    if (entry / "vectors.npy").is_file():
        touch(entry)
        return np.load(entry / "vectors.npy"), True
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415  (loads the whole pipeline)

    model = SentenceTransformer(str(root), device="cpu")
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=len(texts) > 5000)
    vectors = np.asarray(vectors, dtype=np.float32)
    tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")  # a stopped writer's leftover: ``retort cache``
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "vectors.npy", vectors)
    meta = {"what": "sentence vectors", "dtype": "float32", "examples": len(texts), "source": str(root)}
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:  # as the teacher-output cache: another process's finished copy is kept, never replaced
        if entry.exists():
            shutil.rmtree(tmp)
        else:
            tmp.rename(entry)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return vectors, False


class EmbeddingStudent(nn.Module):
    """An encoder (a sequence classifier of any family; its base model is used), mean pooling, a projection
    to the teacher's width when the encoder is narrower or wider, and L2 normalisation when the teacher's
    vectors are normalised."""

    def __init__(self, encoder: nn.Module, dims: int, normalize: bool):
        super().__init__()
        self.encoder, self.normalize = encoder, normalize
        width = encoder.config.hidden_size
        self.dense = nn.Linear(width, dims) if width != dims else None

    def parameter_count(self) -> int:
        """The parameters the saved folder holds: the base encoder and the projection (not the unused head)."""
        return sum(p.numel() for m in (self.encoder.base_model, self.dense) if m is not None for p in m.parameters())

    def pooled(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(B, width) the encoder's last hidden states averaged over real tokens (before any projection)."""
        types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": types}
        out = forward(self.encoder, batch, Needs(hidden_states=True))
        return mean_pool(out.hidden_states[-1], attention_mask)

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(B, D) sentence vectors: mean over real tokens, projected, normalised as the saved folder does."""
        v = self.pooled(input_ids, attention_mask, token_type_ids)
        if self.dense is not None:
            v = self.dense(v)
        return F.normalize(v, dim=-1) if self.normalize else v


def build(teacher: str | Path, student: str, init: str, texts: list[str], dims: int, normalize: bool, *,
          heads: int | None = None, ffn: int | None = None):  # fmt: skip
    """(EmbeddingStudent, its tokenizer, how it started): ``student`` is ``LxH`` (from the teacher's transformer:
    ``init`` prune, teacher or random; or pruned from the model folder ``init``, with its tokenizer) or a
    transformers encoder folder of any family as it is (its own tokenizer)."""
    if Path(student).is_dir():
        path = _encoder_path(student)
        encoder = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=torch.float32)
        return EmbeddingStudent(encoder, dims, normalize), load_tokenizer(str(path)), f"the encoder of {student}"
    check_init(init)
    if Path(init).is_dir():  # cut from another model (its own tokenizer): pruned to the shape
        path, cut_from, init = _encoder_path(init), f"{init} (pruned)", "prune"
    else:
        path, cut_from = teacher_parts(teacher).transformer, f"the teacher ({init})"
    source = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=torch.float32)
    shape = StudentShape.parse(student, heads, ffn)
    head_size = source.config.hidden_size // source.config.num_attention_heads
    if heads is None and shape.hidden % head_size == 0:  # the teacher's head width
        shape = StudentShape(shape.layers, shape.hidden, shape.hidden // head_size, ffn)
    tokenizer = load_tokenizer(str(path))
    sample = None
    if init == "prune":  # importance measured on the first training sentences
        enc = tokenizer(texts[:64], padding=True, truncation=True, max_length=128, return_tensors="pt")
        sample = [dict(enc)]
    encoder = build_student(source, shape, init=init, sample_batches=sample)
    return EmbeddingStudent(encoder, dims, normalize), tokenizer, f"{shape} from {cut_from}"


def check_init(init: str) -> None:
    """``--student-init``: prune, teacher, random or a model folder; anything else is one line (checked before
    the teacher's vectors are computed)."""
    if init not in ("prune", "teacher", "random") and not Path(init).is_dir():
        raise ConfigError(f"--student-init {init}: prune, teacher, random or a model folder to prune the student from")


def _encoder_path(folder: str | Path) -> Path:
    """A model folder's transformer: a sentence-transformers folder's first module, else the folder itself."""
    path = Path(folder)
    if is_st_folder(path):
        modules = json.loads((path / MODULES_FILE).read_text())
        path = path / modules[0].get("path", "")
    return path


RIDGE = (1e-3, 1e-2, 1e-1, 1.0)  # ridge strengths tried, times the mean feature energy


def fit_projection(model: EmbeddingStudent, tokenizer, texts: list[str], target: np.ndarray, max_length: int = 128,
                   limit: int = 4096) -> dict | None:  # fmt: skip
    """Start a projected student's ``dense`` at the ridge-regression map from its pooled vectors to the teacher's
    (on up to ``limit`` training sentences), so training starts in the teacher's space rather than at a random
    projection that first pulls the pretrained encoder about. Plain least squares is degenerate here (a
    pretrained encoder's pooled vectors are nearly collinear: weights of 1e36 that the first update blows up),
    so the ridge strength is chosen among ``RIDGE`` on a tenth of those sentences, then refitted on all.
    Returns the strength and the mean cosine to the teacher on the fit's held tenth (None: no projection)."""
    if model.dense is None:
        return None
    n = min(limit, len(texts))
    model.eval()
    with torch.no_grad():
        pooled = torch.cat([_encode(model, tokenizer, texts[i : i + 128], max_length, model.pooled)
                            for i in range(0, n, 128)])  # fmt: skip
    model.train()
    x = torch.cat([pooled, torch.ones(n, 1)], dim=1).double()
    y = torch.from_numpy(target[:n]).double()
    cut = n - max(1, n // 10)

    def solve(rows: slice, strength: float) -> torch.Tensor:  # (width + 1, dims); the bias is not shrunk
        a = x[rows].T @ x[rows]
        shrink = torch.ones(a.shape[0], dtype=a.dtype)
        shrink[-1] = 0
        return torch.linalg.solve(a + strength * a.diagonal()[:-1].mean() * torch.diag(shrink), x[rows].T @ y[rows])

    def cosine(w: torch.Tensor) -> float:
        return float(F.cosine_similarity(x[cut:] @ w, y[cut:], dim=-1).mean())

    scores = {strength: cosine(solve(slice(0, cut), strength)) for strength in RIDGE}
    best = max(scores, key=scores.get)
    w = solve(slice(0, n), best)
    with torch.no_grad():
        model.dense.weight.copy_(w[:-1].T.float())
        model.dense.bias.copy_(w[-1].float())
    return {"ridge": best, "held_cosine": scores[best], "sentences": n}


def _batches(n: int, size: int, rng: random.Random) -> list[list[int]]:
    order = list(range(n))
    rng.shuffle(order)
    return [order[i : i + size] for i in range(0, n, size)]


def _encode(model: EmbeddingStudent, tokenizer, texts: list[str], max_length: int, call=None) -> torch.Tensor:
    """``texts`` tokenised and through ``call`` (the model's sentence vectors; ``model.pooled``: before them)."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return (call or model)(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))


def held_out_cosine(model: EmbeddingStudent, tokenizer, texts: list[str], target: np.ndarray,
                    max_length: int = 128, batch_size: int = 128) -> float:  # fmt: skip
    """Mean cosine between the student's and the teacher's vectors of the held-out sentences."""
    model.eval()
    cos = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            v = _encode(model, tokenizer, texts[i : i + batch_size], max_length)
            cos.append(F.cosine_similarity(v, torch.from_numpy(target[i : i + batch_size]), dim=-1))
    model.train()
    return float(torch.cat(cos).mean()) if cos else float("nan")


def loss_fn(student: torch.Tensor, teacher: torch.Tensor, pair_weight: float = 0.0) -> torch.Tensor:
    """MSE between the sentence vectors, plus ``pair_weight`` times the MSE between the in-batch cosine matrices
    (each sentence against every other of its batch) of student and teacher."""
    loss = F.mse_loss(student, teacher)
    if pair_weight:
        s, t = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
        loss = loss + pair_weight * F.mse_loss(s @ s.T, t @ t.T)
    return loss


def train(model: EmbeddingStudent, tokenizer, texts: list[str], target: np.ndarray, held: tuple[list[str], np.ndarray],
          *, epochs: int, lr: float, batch_size: int, pair_weight: float, max_length: int, seed: int,
          log=print) -> dict:  # fmt: skip
    """AdamW with linear warm-up (10%) and decay; the epoch whose student is closest to the teacher on the
    held-out sentences is kept (its weights loaded back into ``model``). Returns the history."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), steps)
    best, history, start = None, [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        total = 0.0
        batches = _batches(len(texts), batch_size, rng)
        for i, b in enumerate(batches):
            v = _encode(model, tokenizer, [texts[j] for j in b], max_length)
            loss = loss_fn(v, torch.from_numpy(target[b]), pair_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step(), opt.zero_grad()
            total += loss.item()
            if (i + 1) % 200 == 0:
                log(f"embed distill: epoch {epoch}, batch {i + 1}/{len(batches)}, loss {total / (i + 1):.5f}")
        cosine = held_out_cosine(model, tokenizer, *held, max_length=max_length)
        history.append({"epoch": epoch, "loss": total / len(batches), "heldout_cosine": cosine,
                        "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
        log(f"embed distill: epoch {epoch}: training loss {total / len(batches):.5f}, held-out cosine {cosine:.4f}")
        if best is None or cosine > best[0]:
            best = (cosine, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    return {"history": history, "best_epoch": best[1], "heldout_cosine": best[0]}


def save(model: EmbeddingStudent, tokenizer, out: str | Path, record: dict, max_length: int = 128) -> Path:
    """``out`` as a sentence-transformers folder (Transformer, Pooling, Dense when projected, Normalize when the
    teacher normalises) with ``retort_embed.json``; written under a temporary name, then renamed."""
    from sentence_transformers import SentenceTransformer, models  # noqa: PLC0415

    final = Path(out)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with saving(tmp):
            base = tmp / "encoder"
            model.encoder.base_model.save_pretrained(base, safe_serialization=True)
            tokenizer.save_pretrained(base)
            transformer = models.Transformer(str(base), max_seq_length=max_length)
            dims = model.encoder.config.hidden_size
            modules = [transformer, models.Pooling(dims, pooling_mode="mean")]
            if model.dense is not None:
                dense = models.Dense(dims, model.dense.out_features, activation_function=nn.Identity())
                dense.linear.load_state_dict(model.dense.state_dict())
                modules.append(dense)
            if model.normalize:
                modules.append(models.Normalize())
            SentenceTransformer(modules=modules, device="cpu").save(str(tmp / "st"))
            shutil.rmtree(base)
            for p in (tmp / "st").iterdir():
                p.rename(tmp / p.name)
            (tmp / "st").rmdir()
            write_atomic(tmp / "retort_embed.json", json.dumps(record, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, final)
    return final


def check_texts(texts: list[str]) -> None:
    """At least 10 distinct sentences: fewer leave no held-out sentence to choose an epoch on."""
    if len(texts) < 10:
        raise ConfigError(f"{len(texts)} distinct sentences in --corpus (and --data): at least 10 are needed "
                          "(a tenth is held out)")  # fmt: skip
