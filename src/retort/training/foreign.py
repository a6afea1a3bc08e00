"""A distilled student started from another model that reads its own tokens (``--student-init FOLDER`` of
another vocabulary or family than the teacher's, e.g. all-MiniLM-L6-v2's layers under an MPNet teacher).

Such a student cannot be compared with the teacher token by token or layer by layer, so it learns the teacher's
logits (the soft term) and the gold labels (the hard term) only. The teacher's logits are computed once, on the
teacher's own tokens, for the training rows (transfer rows included) and the held-out rows, and kept in the
on-disk teacher-output cache (``distill/teacher_cache.teacher_logits``); the student reads its own tokens
everywhere, and its run folder keeps its own tokenizer. The teacher never runs during training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from transformers import AutoConfig

from retort.config import STUDENT_INITS, TrainConfig
from retort.data.batching import Encoded
from retort.distill.presets import resolve as resolve_preset
from retort.distill.teacher_cache import teacher_logits
from retort.errors import ConfigError
from retort.models.check import TOKENIZER_FILES, inspect_model_folder
from retort.models.families import FAMILIES, usable_positions, width
from retort.models.hf import load_tokenizer, resolve_model_path
from retort.models.student import StudentShape
from retort.training.distributed import rank_zero_first
from retort.training.runtime import plain_device


@dataclass(frozen=True)
class ForeignStart:
    """A ``--student-init`` model that reads its own tokens (another family or vocabulary than the teacher's)."""

    path: str
    tokenizer: object


def foreign_start(cfg: TrainConfig, teacher_tokenizer) -> ForeignStart | None:
    """The ``--student-init`` folder of a distillation when its tokenizer is not the teacher's (else None). Such
    a student cannot be compared token by token or layer by layer with the teacher: it learns the teacher's
    logits (soft term) and the gold labels (hard term) only, the logits computed once on the teacher's tokens."""
    if cfg.kind != "distill" or cfg.student_init in STUDENT_INITS:
        return None
    path = Path(inspect_model_folder(cfg.student_init, "--student-init", "student-init", note=False).path)
    own = _model_type(path)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        return None  # a student checkpoint saved without a tokenizer reads the teacher's
    tokenizer = load_tokenizer(str(path), "--student-init")
    linear = getattr(FAMILIES.get(own), "kernel", None) == "linear"  # retort's linear student reads its teacher's
    same_family = linear or own == _model_type(Path(resolve_model_path(cfg.teacher)))
    if same_family and tokenizer.get_vocab() == teacher_tokenizer.get_vocab():
        return None
    o = resolve_preset(cfg.objective)
    terms = [k for k in ("beta", "gamma", "value_weight", "cosine_weight") if getattr(o, k)]
    if terms or cfg.general or cfg.dse or cfg.long_sts_tokens or cfg.attention != "softmax":
        why = (f"--method {o.method} compares layers ({', '.join(terms)})" if terms
               else "--attention linear builds from the teacher" if cfg.attention != "softmax"
               else "this run reads layers")  # fmt: skip
        raise ConfigError(
            f"--student-init {cfg.student_init}: a {own} model with its own tokenizer (not the teacher's), so it "
            f"can learn the teacher's logits only and {why}: use --method kd, or prune from the teacher"
        )
    shape, config = StudentShape.parse(cfg.student), AutoConfig.from_pretrained(str(path))
    layers, hidden, _, _ = width(config)
    if shape.layers > layers or shape.hidden > hidden:
        raise ConfigError(
            f"--student {shape}: larger than --student-init {cfg.student_init} ({layers}x{hidden}); give a shape "
            "inside it"
        )
    if cfg.max_length > usable_positions(config):
        raise ConfigError(f"--max-length {cfg.max_length}: above --student-init {cfg.student_init}'s "
                          f"{usable_positions(config)} positions")  # fmt: skip
    print(f"student: {shape} from {path}, which has its own tokenizer; the teacher's logits computed once on its "
          "tokens")  # fmt: skip
    return ForeignStart(str(path), tokenizer)


def attach_teacher_logits(cfg: TrainConfig, splits: dict, train: Encoded, dev: dict, teacher_tokenizer) -> None:
    """A student with its own tokenizer: the teacher's logits on the teacher's tokens, computed once (and cached
    on disk) for the training rows and the held-out rows (whose objective is measured at each evaluation)."""
    device = plain_device(cfg)
    for name, data in (("train", train), ("val", dev.get("val"))):
        if data is not None:  # with several processes, rank 0 computes them and the others read them
            once = partial(
                teacher_logits, cfg.teacher, splits[name], teacher_tokenizer, cfg.max_length, device=device.type
            )
            data.teacher_logits = rank_zero_first(once, device).tolist()


def _model_type(path: Path) -> str | None:
    """``model_type`` of a local model folder's config.json (None for a hub name)."""
    file = path / "config.json"
    return json.loads(file.read_text()).get("model_type") if file.is_file() else None
