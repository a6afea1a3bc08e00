"""Teacher outputs computed once and cached on disk, keyed by teacher weights, data and settings.

Used where the student's training must not (or cannot) run the teacher: the long-input STS-B variant
(the teacher reads only 512 tokens) and distilled sentence embeddings (a cross-encoder's pair scores).
The cache lives in ``$RETORT_CACHE`` (default ``~/.cache/retort``) as safetensors files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from retort.data.batching import encode
from retort.data.glue import Split
from retort.evaluation.evaluator import predict
from retort.models.hf import load_classifier, resolve_model_path
from retort.paths import sha256_file


def cache_dir() -> Path:
    return Path(os.environ.get("RETORT_CACHE") or Path.home() / ".cache" / "retort")


IDENTITY_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def cache_key(teacher_dir: str, split: Split, max_length: int) -> str:
    """sha256 of the teacher's identity (its name, its weights, config and tokenizer files), every text of
    the split, and the settings. Two hub teachers without local files differ by name; a folder whose
    weights, config or tokenizer changed gets a new key."""
    root = Path(resolve_model_path(teacher_dir))
    files = sorted(root.glob("*.safetensors")) + [root / n for n in IDENTITY_FILES if (root / n).is_file()]
    h = hashlib.sha256()
    h.update(json.dumps([str(teacher_dir) if not root.is_dir() else "", *(f.name for f in files)]).encode())
    h.update(json.dumps([sha256_file(w) for w in files]).encode())
    h.update(json.dumps([split.task.name, split.name, max_length]).encode())
    for ex in split.examples:
        h.update("\x1f".join(ex.texts).encode() + b"\x1e")
    return h.hexdigest()[:24]


def teacher_logits(
    teacher_dir: str, split: Split, tokenizer, max_length: int = 128, batch_size: int = 128, device: str = "cpu"
) -> np.ndarray:
    """The teacher's logits (N, C) for every example of ``split``, from the cache when present."""
    key = cache_key(teacher_dir, split, max_length)
    path = cache_dir() / "teacher_logits" / f"{split.task.name}-{split.name}-{key}.safetensors"
    if path.exists():
        return load_file(str(path))["logits"].numpy()
    teacher = load_classifier(teacher_dir, split.task).to(device)
    logits = predict(teacher, encode(split, tokenizer, max_length), batch_size, device, tokenizer.pad_token_id or 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"logits": torch.from_numpy(np.ascontiguousarray(logits))}, str(tmp))
    tmp.replace(path)
    return logits
