"""A sentence-transformers folder (``modules.json``) as one PyTorch module that ``retort export`` traces.

The folders retort writes (``retort dse export``, ``retort embed distill``) and most published embedding
models are a pipeline of four module types, run in order on each sentence:

    Transformer  the encoder: its files at the folder's root (path "") or in a subfolder (0_Transformer)
    Pooling      the mean over real tokens, or the first token's vector (cls)
    Dense        optional, any number: a linear layer and its activation (Tanh, Identity, ...)
    Normalize    optional, last: L2 normalisation

``read_st_folder`` checks the folder's description before anything loads (each fault one line naming the
file and what is allowed); ``SentenceEncoder`` runs the SentenceTransformer's own modules with eager
attention, so the traced graph computes what ``SentenceTransformer(folder).encode`` computes after
tokenisation, and nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from retort.errors import RetortError
from retort.models.check import MODULES_FILE

ALLOWED = "Transformer, Pooling (mean or cls), then optionally Dense layers and Normalize"
_ORDER = re.compile(r"TPD*N?")  # the first letters of the module kinds, in order


@dataclass(frozen=True)
class StFolder:
    """What a checked sentence-transformers folder holds: the module kinds in order, the transformer's folder,
    the pooling (``mean`` or ``cls``), whether it normalises, and ``max_seq_length`` where the folder says."""

    path: Path
    modules: tuple[str, ...]
    transformer: Path
    pooling: str
    normalize: bool
    max_seq_length: int | None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise RetortError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise RetortError(f"{path}: not valid JSON ({e})") from None


def _pooling_modes(config: dict) -> list[str]:
    """The pooling modes a Pooling ``config.json`` turns on: ``pooling_mode`` (sentence-transformers 6), else
    the ``pooling_mode_*_token(s)`` flags of earlier versions (none on: mean, as sentence-transformers reads it)."""
    mode = config.get("pooling_mode")
    if mode is not None:
        return [mode] if isinstance(mode, str) else [str(m) for m in mode]
    flags = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max", "pooling_mode_mean_tokens": "mean",
             "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
             "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}  # fmt: skip
    return [name for key, name in flags.items() if config.get(key)] or ["mean"]


def read_st_folder(folder) -> StFolder:
    """Check a sentence-transformers folder's ``modules.json``, its Pooling config, ``sentence_bert_config.json``
    and default prompt; a module, pooling or prompt the export cannot reproduce is one ``RetortError`` line."""
    root = Path(folder)
    file = root / MODULES_FILE
    modules = _read_json(file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) and isinstance(m.get("type"), str)
                                                for m in modules):  # fmt: skip
        raise RetortError(f"{file}: not a list of modules, each with a type")
    kinds = tuple(m["type"].rsplit(".", 1)[-1] for m in modules)
    for i, (m, kind) in enumerate(zip(modules, kinds)):
        if kind not in ("Transformer", "Pooling", "Dense", "Normalize"):
            raise RetortError(f"{file}: module {i} is {m['type']}, which retort cannot reproduce; it reads {ALLOWED}")
    if not _ORDER.fullmatch("".join(k[0] for k in kinds)):
        raise RetortError(f"{file}: modules {', '.join(kinds) or 'none'}; retort reads {ALLOWED}, in that order")
    transformer = root / modules[0].get("path", "")
    if not (transformer / "config.json").is_file():
        raise RetortError(f"{file}: the Transformer's folder {transformer} has no config.json")
    pooling_file = root / modules[1].get("path", "") / "config.json"
    modes = _pooling_modes(_read_json(pooling_file))
    if modes not in (["mean"], ["cls"]):
        raise RetortError(f"{pooling_file}: pooling {'+'.join(modes)}; retort reads mean or cls pooling")
    length = _check_texts_as_given(root, transformer)
    return StFolder(root, kinds, transformer, modes[0], kinds[-1] == "Normalize", length)


def _check_texts_as_given(root: Path, transformer: Path) -> int | None:
    """The folder's ``max_seq_length`` (``sentence_bert_config.json``; None where it says none), after refusing a
    default prompt: sentence-transformers would put one before every text, the export's tokenizer does not."""
    own = root / "config_sentence_transformers.json"
    if own.is_file():
        config = _read_json(own)
        name = config.get("default_prompt_name")
        if name and (config.get("prompts") or {}).get(name):
            raise RetortError(f"{own}: default_prompt_name {name!r}: sentence-transformers puts that prompt before "
                              "every text and the export would not; set it to null to export")  # fmt: skip
    sbert = transformer / "sentence_bert_config.json"
    length = _read_json(sbert).get("max_seq_length") if sbert.is_file() else None
    if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 2):
        raise RetortError(f"{sbert}: max_seq_length {length!r}; a whole number >= 2")
    return length


class SentenceEncoder(nn.Module):
    """A loaded SentenceTransformer behind the bi-encoder's interface: ``embed(input_ids, attention_mask,
    token_type_ids)`` -> (B, D) sentence embeddings, ``embedding_dim``, ``pooling`` and the transformer's
    ``config``. There is no pair head: its vectors are compared by cosine."""

    def __init__(self, st, parts: StFolder):
        super().__init__()
        self.st = st
        self.parts = parts
        self.pooling = parts.pooling
        self.config = st[0].auto_model.config
        self.embedding_dim = int(st.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int | None:
        """Where sentence-transformers truncates: ``sentence_bert_config.json``'s ``max_seq_length``, else the
        loaded pipeline's (its tokenizer's ``model_max_length``); None when neither says."""
        own = self.parts.max_seq_length or self.st.max_seq_length
        return int(own) if own is not None and own < 10**6 else None

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None) -> torch.Tensor:
        """Sentence embeddings (B, D) of single sentences (each input (B, T) int64), through every module of the
        folder (token types reach the transformer only where its forward takes them)."""
        features = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            features["token_type_ids"] = token_type_ids
        return self.st(features)["sentence_embedding"]

    def encode(self, texts: list[str]):
        """``SentenceTransformer.encode``: (N, D) float32 numpy vectors, the reference an export is checked against."""
        return self.st.encode(texts, convert_to_numpy=True, show_progress_bar=False)


def load_st_encoder(parts: StFolder) -> SentenceEncoder:
    """The folder loaded by sentence-transformers on the CPU, in eval mode with eager attention (the graph
    onnxruntime's fusions recognise); a folder it cannot load, or one whose texts it lowercases where the
    tokenizer itself does not, is one line."""
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415  (loads the whole pipeline)

    try:
        st = SentenceTransformer(str(parts.path), device="cpu")
    except Exception as e:  # transformers' and sentence-transformers' own errors: one line
        raise RetortError(f"{parts.path}: sentence-transformers cannot load it ({str(e).splitlines()[0]})") from None
    model = st[0].auto_model
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    if getattr(st[0], "do_lower_case", False):
        normalizer = getattr(getattr(st[0].tokenizer, "backend_tokenizer", None), "normalizer", None)
        if normalizer is None or normalizer.normalize_str("A") != "a":
            raise RetortError(
                f"{parts.transformer / 'sentence_bert_config.json'}: do_lower_case true: "
                "sentence-transformers lowercases texts, the exported tokenizer would not"
            )
    return SentenceEncoder(st, parts).eval()
