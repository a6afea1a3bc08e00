"""Loading teachers and saving models in Hugging Face format (safetensors only, never pickle). A folder is
checked before it loads (``models/check.py``)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Protocol

import torch
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
    label_names: tuple[str, ...] | None
    problem_type: str
    spec: str


HEAD_CHECKED = ("teacher",)  # kinds whose task head must come from the checkpoint (see load_classifier)


def load_classifier(
    name: str,
    task: TaskLike,
    attn_implementation: str = "sdpa",
    option: str | None = None,
    kind: str = "model",
    trained_head: bool | None = None,
) -> nn.Module:
    """A sequence classifier for ``task`` (a ``BiEncoder`` for a bi-encoder folder). The folder is checked
    first (``check.check_model_folder``, for use as ``kind``; ``option`` names it in an error).

    A model trained for a task says so (``retort_task``, or a fine-tuned folder's ``id2label``): its labels
    must be the task's, same count, same names in the same order, or it is one line naming both. With
    ``trained_head`` (default: for a ``--teacher``) the classification head must come from the checkpoint: a
    plain encoder or a head of another size is refused rather than read as random logits. Otherwise
    (``--base``, a student's init) a missing or other-sized head is made fresh for the task; a ``--base``
    fine-tuned on another task (RTE's teacher from MNLI's, intermediate-task training) is a start.

    ``attn_implementation="eager"`` is needed whenever attention maps are read (attention losses).
    """
    path = check_model_folder(name, option, kind, note=False)
    if biencoder.is_dse_folder(path):
        return biencoder.BiEncoder.from_pretrained(path, checked=True)
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as e:
        raise RetortError(f"{name}: cannot load a model config ({_first_line(e)})") from None
    label = f"{option} {name}" if option else name
    trained_head = kind in HEAD_CHECKED if trained_head is None else trained_head
    trained_for = getattr(config, "retort_task", None)
    if trained_for and trained_for != task.name:
        if kind != "base":
            raise RetortError(f"{label}: this model was trained for {trained_for}, not {task.name}")
        # a model fine-tuned on another task as a start (RTE's teacher from MNLI's): its encoder, a new head
        trained_for = None
        config.__dict__.pop("retort_task_spec", None)
    plain = [a for a in getattr(config, "architectures", None) or [] if "ForSequenceClassification" not in a]
    if trained_head and not trained_for and plain:
        raise RetortError(
            f"{label}: no trained classification head in the folder (it holds a {plain[0]}: an encoder only); "
            f"fine-tune it first: retort teacher --base {name} --task/--data ..."
        )
    if trained_for or trained_head:
        check_labels(config, task, label)
    if config.num_labels != task.num_labels or not trained_for:
        config.num_labels = task.num_labels  # the task's names replace a base's (or a checked teacher's, case aside)
        config.id2label = {i: n for i, n in enumerate(task.label_names or ("score",))}
        config.label2id = {n: i for i, n in config.id2label.items()}
    family = family_of(config)  # an unknown family is a clear error here, before any weights load
    config.problem_type = task.problem_type
    config.retort_task = task.name
    if task.spec:  # a task of the user's: its resolved spec travels with the model (data/spec.py)
        config.retort_task_spec = json.loads(task.spec)
    # sdpa is transformers' default where a family has it (MPNet, retort's linear student have not)
    attn = {"attn_implementation": "eager"} if attn_implementation == "eager" and family.kernel != "linear" else {}
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path, config=config, use_safetensors=True, output_loading_info=True, ignore_mismatched_sizes=not trained_head,
        dtype=torch.float32,
        **attn,
    )  # fmt: skip
    fresh = list(info.get("missing_keys") or []) + [k[0] if isinstance(k, tuple) else k
                                                     for k in info.get("mismatched_keys") or []]  # fmt: skip
    if trained_head and fresh:
        raise RetortError(
            f"{label}: no trained classification head in the folder ({len(fresh)} weight(s) would be random, first: "
            f"{sorted(fresh)[0]}); fine-tune it first: retort teacher --base {name} --task/--data ..."
        )
    return model


GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


def _generic(config) -> bool:
    """True where ``id2label`` holds transformers' placeholder names (``LABEL_0``, ...), which say nothing."""
    names = [str(n) for n in (getattr(config, "id2label", None) or {}).values()]
    return not names or all(GENERIC_LABEL.match(n) for n in names)


def check_labels(config, task: TaskLike, label: str) -> None:
    """A trained model's labels against the task's: the same count, and where the folder names its labels
    (``id2label`` other than ``LABEL_i``) the same names in the same order (case aside). One line naming both
    otherwise."""
    own = [str(config.id2label[i]) for i in sorted(config.id2label, key=int)] if config.id2label else []
    want = list(task.label_names or ("score",))
    regression = task.label_names is None
    if config.num_labels != task.num_labels:
        theirs = "one score (regression)" if config.num_labels == 1 else f"{config.num_labels} labels"
        ours = "one score (regression)" if regression else f"{len(want)} labels ({', '.join(want)})"
        named = f" ({', '.join(own)})" if own and not _generic(config) and config.num_labels > 1 else ""
        raise RetortError(f"{label}: the model outputs {theirs}{named}, the task {task.name} has {ours}")
    if regression or _generic(config) or [n.lower() for n in own] == [n.lower() for n in want]:
        return
    how = "the same names in another order" if sorted(n.lower() for n in own) == sorted(n.lower() for n in want) \
        else "other names"  # fmt: skip
    raise RetortError(
        f"{label}: the model's labels are {', '.join(own)} and the task {task.name}'s are {', '.join(want)} ({how}); "
        "give the spec labels: in the model's order, or a teacher trained on this data"
    )


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
