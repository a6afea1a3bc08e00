"""Distilled sentence embeddings (DSE, Barkan et al. 2020): a siamese bi-encoder student.

One shared encoder (any retort student: a softmax student of any family, or linear attention) embeds
each sentence alone; a pair head scores the two vectors:

    classification:  logits = W [u, v, u * v, |u - v|] + b                       (B, C)
    regression:      score  = a * cos(u, v) + c, a and c learned (init 2.5, 2.5)  (B, 1), STS-B's 0..5

Pooling: ``mean`` over real tokens, ``cls``, or ``mean-top-K``: the concatenated mean-pooled outputs of
the top K layers. Candidate embeddings can then be computed once (``retort dse index``) and a query
costs one encoder pass plus N vector operations.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForSequenceClassification

from retort.errors import ConfigError
from retort.models.check import DSE_CONFIG, check_model_folder
from retort.models.families import family_of
from retort.models.outputs import ModelOutput, Needs, forward
from retort.paths import publish_dir, saving
from retort.progress import tracked

CONFIG_NAME = DSE_CONFIG


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, T, H) over real tokens of (B, T) -> (B, H)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class BiEncoder(nn.Module):
    """``encoder`` is a sequence classifier of any family (its base model is used, the task head is not)."""

    def __init__(self, encoder: nn.Module, num_labels: int, regression: bool, pooling: str = "mean"):
        super().__init__()
        self.encoder = encoder
        self.regression, self.pooling, self.num_labels = regression, pooling, num_labels
        self.top_k = 1
        if pooling.startswith("mean-top-"):
            self.top_k = int(pooling.rsplit("-", 1)[1])
        elif pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling {pooling!r}: choose mean, cls or mean-top-K")
        width = encoder.config.hidden_size * self.top_k
        if regression:
            self.scale = nn.Parameter(torch.tensor(2.5))
            self.shift = nn.Parameter(torch.tensor(2.5))
        else:
            self.head = nn.Linear(4 * width, num_labels)
        self.config = encoder.config  # layers, heads, width: what objectives and benches read

    @property
    def embedding_dim(self) -> int:
        """Width of an embedding: the encoder's hidden size, times ``top_k`` layers when mean-pooling."""
        return self.encoder.config.hidden_size * self.top_k

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None) -> torch.Tensor:
        """Sentence embeddings (B, D) for single sentences."""
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids),
        }
        out = forward(self.encoder, batch, Needs(hidden_states=True))
        if self.pooling == "cls":
            return out.hidden_states[-1][:, 0]
        layers = out.hidden_states[-self.top_k :]
        return torch.cat([mean_pool(h, attention_mask) for h in layers], dim=-1)

    def score(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Pair logits from two embedding batches (B, D), (B, D) -> (B, C) or (B, 1)."""
        if self.regression:
            return (self.scale * F.cosine_similarity(u, v, dim=-1) + self.shift).unsqueeze(-1)
        return self.head(torch.cat([u, v, u * v, (u - v).abs()], dim=-1))

    def retort_forward(self, batch: dict[str, torch.Tensor], needs: Needs | None = None) -> ModelOutput:
        """Pair logits for a batch of separately tokenised pairs (``input_ids``, ``b_input_ids`` and masks);
        ``needs`` is accepted for the common interface and ignored (a bi-encoder gives logits only)."""
        u = self.embed(batch["input_ids"], batch["attention_mask"])
        v = self.embed(batch["b_input_ids"], batch["b_attention_mask"])
        return ModelOutput(logits=self.score(u, v), attention_mask=batch["attention_mask"])

    # ---- saving: encoder/ (its own format), head.safetensors, retort_dse.json; never pickle

    def save_pretrained(self, path, **_) -> None:
        """Write ``encoder/`` (Hugging Face format), ``head.safetensors`` and ``retort_dse.json`` to ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(path / "encoder")
        head = {k: v.contiguous() for k, v in self.state_dict().items() if not k.startswith("encoder.")}
        with saving(path / "head.safetensors"):
            save_file(head, str(path / "head.safetensors"))
        (path / CONFIG_NAME).write_text(
            json.dumps(
                {
                    "num_labels": self.num_labels,
                    "regression": self.regression,
                    "pooling": self.pooling,
                    "retort_task": getattr(self.encoder.config, "retort_task", None),
                },
                indent=2,
            )
        )

    @classmethod
    def from_pretrained(cls, path, checked: bool = False) -> BiEncoder:
        """A bi-encoder read back from a folder ``save_pretrained`` wrote, in eval mode; the folder is checked
        first (``check.check_model_folder``) unless the caller has (``checked``)."""
        path = Path(check_model_folder(str(path), kind="bi-encoder", note=False) if not checked else path)
        meta = json.loads((path / CONFIG_NAME).read_text())
        encoder = AutoModelForSequenceClassification.from_pretrained(path / "encoder", dtype=torch.float32)
        model = cls(encoder, meta["num_labels"], meta["regression"], meta["pooling"])
        model.load_state_dict(load_file(str(path / "head.safetensors")), strict=False)
        return model.eval()


def is_dse_folder(path) -> bool:
    """Whether ``path`` holds a saved bi-encoder (it has a ``retort_dse.json``)."""
    return (Path(path) / CONFIG_NAME).is_file()


def export_sentence_transformers(model: BiEncoder, tokenizer, out) -> Path:
    """Write the encoder as a sentence-transformers folder (Transformer + Pooling modules), so that
    ``SentenceTransformer(out).encode(texts)`` gives the same embeddings as ``BiEncoder.embed``."""
    family = family_of(model.encoder.config)
    if not family.sentence_transformers:
        raise ConfigError(
            f"sentence-transformers export needs a transformers encoder; a {family.name} encoder is retort's own "
            "architecture, which sentence-transformers cannot load"
        )
    if model.pooling.startswith("mean-top-") and model.top_k > 1:
        raise ConfigError("sentence-transformers has no concatenated top-layer pooling; train with mean or cls")
    final = Path(out)
    tmp = final.with_name(final.name + ".tmp")  # written whole under a temporary name, then renamed
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        with saving(tmp):
            _write_sentence_transformers(model, tokenizer, tmp)
    except BaseException:  # a full disk, a stop: nothing half-written is left
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, final)
    return final


def _write_sentence_transformers(model: BiEncoder, tokenizer, out: Path) -> None:
    """The files of a sentence-transformers folder: the encoder, its tokenizer, the pooling module."""
    out.mkdir(parents=True)
    base = model.encoder.base_model  # the BertModel inside the classifier
    base.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    (out / "1_Pooling").mkdir(exist_ok=True)
    dim = model.encoder.config.hidden_size
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": dim,
                "pooling_mode_cls_token": model.pooling == "cls",
                "pooling_mode_mean_tokens": model.pooling != "cls",
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            indent=2,
        )
    )
    (out / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ],
            indent=2,
        )
    )


def embed_texts(
    model, tokenizer, texts: list[str], batch_size: int = 128, max_length: int = 128, desc: str | None = None
) -> np.ndarray:
    """(N, D) sentence embeddings, in the order of ``texts``, batched by length (longest first, each batch
    padded to its own longest). ``model`` is a ``BiEncoder`` or anything else with
    ``embed(input_ids, attention_mask)`` and ``embedding_dim``. With ``desc``, progress is reported."""
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(ids)), key=lambda j: -len(ids[j]))
    out = np.zeros((len(texts), model.embedding_dim), dtype=np.float32)
    pad = tokenizer.pad_token_id or 0
    with torch.inference_mode():
        for idx in tracked([order[s : s + batch_size] for s in range(0, len(order), batch_size)], desc):
            width = max(len(ids[i]) for i in idx)
            b_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                b_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            out[idx] = model.embed(b_ids, mask).float().numpy()
    return out
