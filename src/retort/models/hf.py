"""Loading teachers and saving models in Hugging Face format (safetensors only, never pickle). A folder is
checked before it loads (``models/check.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Protocol

from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from retort.errors import RetortError
from retort.models import biencoder
from retort.models.check import (  # noqa: F401  (DEFAULT_BASE, resolve_model_path: callers import them from here)
    DEFAULT_BASE,
    check_model_folder,
    inspect_model_folder,
    resolve_model_path,
)
from retort.models.families import family_of, usable_positions
from retort.paths import publish_dir, saving


def load_tokenizer(name: str, option: str | None = None):
    """The tokenizer of a model folder or hub id, the folder checked first (``check.inspect_model_folder``:
    ``option`` names it in an error); a clear ``RetortError`` when there is none."""
    found = inspect_model_folder(name, option, "model", note=False)
    if found.tokenizer is not None:
        return found.tokenizer
    try:
        return AutoTokenizer.from_pretrained(found.path)
    except OSError as e:
        raise RetortError(f"{name}: cannot load a tokenizer ({_first_line(e)})") from None


class TaskLike(Protocol):
    """What the models need of a task (``retort.data.glue.Task`` is one): models/ imports nothing from data/."""

    name: str
    num_labels: int


def load_classifier(
    name: str, task: TaskLike, attn_implementation: str = "sdpa", option: str | None = None, kind: str = "model"
) -> nn.Module:
    """A sequence classifier for ``task`` (a ``BiEncoder`` for a bi-encoder folder); a fresh head is added
    when the checkpoint has none. The folder is checked first (``check.check_model_folder``, for use as
    ``kind``; ``option`` names it in an error).

    ``attn_implementation="eager"`` is needed whenever attention maps are read (attention losses).
    """
    path = check_model_folder(name, option, kind, note=False)
    if biencoder.is_dse_folder(path):
        return biencoder.BiEncoder.from_pretrained(path, checked=True)
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as e:
        raise RetortError(f"{name}: cannot load a model config ({_first_line(e)})") from None
    trained_for = getattr(config, "retort_task", None)
    if trained_for and trained_for != task.name:
        raise RetortError(f"{name}: this model was trained for {trained_for}, not {task.name}")
    if config.num_labels != task.num_labels or not trained_for:
        config.num_labels = task.num_labels
        config.id2label = {i: n for i, n in enumerate(task.label_names or ("score",))}
        config.label2id = {n: i for i, n in config.id2label.items()}
    family = family_of(config)  # an unknown family is a clear error here, before any weights load
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    config.retort_task = task.name
    if task.spec:  # a task of the user's: its resolved spec travels with the model (data/spec.py)
        config.retort_task_spec = json.loads(task.spec)
    # sdpa is transformers' default where a family has it (MPNet, retort's linear student have not)
    attn = {"attn_implementation": "eager"} if attn_implementation == "eager" and family.kernel != "linear" else {}
    return AutoModelForSequenceClassification.from_pretrained(path, config=config, use_safetensors=True, **attn)


def check_finite(model: nn.Module, name: str) -> None:
    """Refuse a model whose weights hold NaN or infinity (a run that diverged)."""
    import torch  # noqa: PLC0415

    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise RetortError(f"{name}: {len(bad)} weight tensors hold NaN or infinity (first: {bad[0]}); refusing it")


def save_model(model: nn.Module, tokenizer, out: Path) -> None:
    """Save in Hugging Face format with safetensors, tokenizer beside; write to a temporary name, then rename.
    A failed write (a full disk: ``SafetensorError``) is an ``OSError`` naming ``OUT.tmp``, which is removed."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        with saving(tmp):
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, out)


def recover_dir(out: Path) -> bool:
    """After a stop inside ``paths.publish_dir``: put the complete ``OUT.old`` back where ``OUT`` is missing."""
    old = out.with_name(out.name + ".old")
    if not out.exists() and old.is_dir():
        old.rename(out)
        return True
    return False


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def settle_max_length(max_length: int | None, config, label: str) -> int:
    """``--max-length`` for inputs to the model of ``config`` (in the folder ``label``): None gives 128, or the
    model's position table where that is shorter; a value outside 2..table is one line."""
    limit = usable_positions(config)
    length = max_length or min(128, limit)
    if not 2 <= length <= limit:
        raise RetortError(f"--max-length {length}: must be between 2 and {limit} for {label} (its position table)")
    return length
