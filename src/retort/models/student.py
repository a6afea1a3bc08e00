"""Students built from the teacher's config: shape ``LxH``, initialised from teacher layers.

A softmax student is a model of the teacher's own family (``BertForSequenceClassification``,
``DebertaV2ForSequenceClassification``, ...) with fewer or narrower layers; a linear student is retort's
``LinearBertForSequenceClassification``. Both save and load with ``AutoModelForSequenceClassification``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification

from retort.errors import ConfigError
from retort.models.check import check_model_folder
from retort.models.families import family_of, width
from retort.models.init import (
    copy_teacher_weights,
    extend_position_table,
    linear_config,
    position_offset,
    softmax_config,
)
from retort.models.linear import LinearBertForSequenceClassification
from retort.models.prune import prune_student


@dataclass(frozen=True)
class StudentShape:
    """Layers x hidden width; heads and FFN width derived unless given."""

    layers: int
    hidden: int
    heads: int | None = None
    intermediate: int | None = None

    @classmethod
    def parse(cls, text: str, heads: int | None = None, intermediate: int | None = None) -> StudentShape:
        """``"LAYERSxHIDDEN"`` (``3x384``) as a shape; a ``ConfigError`` naming ``--student`` otherwise."""
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
        if not m:
            raise ConfigError(f"--student {text!r}: expected LAYERSxHIDDEN, for example 3x384")
        layers, hidden = int(m.group(1)), int(m.group(2))
        if layers < 1 or hidden < 1:
            raise ConfigError(f"--student {text!r}: layers and hidden must be positive")
        return cls(layers, hidden, heads, intermediate)

    def resolve(self, teacher_config) -> StudentShape:
        """Fill in heads and FFN width: the teacher's when the width matches, else hidden/64 and 4*hidden."""
        _, t_hidden, t_heads, t_inter = width(teacher_config)
        same = self.hidden == t_hidden
        heads = self.heads or (t_heads if same else max(1, self.hidden // 64))
        inter = self.intermediate or (t_inter if same else 4 * self.hidden)
        if self.hidden % heads:
            raise ConfigError(f"student hidden size {self.hidden} is not divisible by {heads} heads")
        return StudentShape(self.layers, self.hidden, heads, inter)

    def __str__(self) -> str:
        return f"{self.layers}x{self.hidden}"


def build_student(
    teacher: nn.Module,
    shape: StudentShape,
    init: str = "teacher",
    attention: str = "softmax",
    feature_map: str = "elu",
    max_positions: int | None = None,
    position_mode: str = "copy",
    feature_options: dict | None = None,
    sample_batches: list | None = None,
) -> nn.Module:
    """A student of ``shape`` with the teacher's vocabulary, task head type and label set.

    Softmax students are of the teacher's own family (its config with fewer or narrower layers);
    ``attention="linear"`` builds retort's linear-attention student (models/linear.py) from a teacher of
    any BERT-shaped family. ``init``: ``"teacher"`` copies the embeddings, the uniformly mapped layers
    and the head when the widths match (DistilBERT's recipe) and falls back to random weights otherwise;
    ``"random"`` leaves everything random; ``"prune"`` cuts the teacher's mapped layers down to the
    student's width by importance measured on ``sample_batches`` (models/prune.py; heads default to the
    teacher's count when the width divides by it, the FFN to the teacher's FFN-to-width ratio); any other
    value is a checkpoint folder to load.
    ``max_positions`` extends the position table past the teacher's (``position_mode``: copy or
    interpolate), or past a loaded checkpoint's (its learned rows are kept). ``feature_options`` are
    further ``LinearBertConfig`` fields of the feature map (``hedgehog_act``, ``hedgehog_qk``).
    """
    tconf = teacher.config
    if attention not in ("softmax", "linear"):
        raise ConfigError(f"attention {attention!r}: choose softmax or linear")
    if init == "prune":
        if attention != "softmax":
            raise ConfigError("--student-init prune builds softmax students (the teacher's family)")
        heads, inter = shape.heads, shape.intermediate
        if heads is None and shape.hidden % tconf.num_attention_heads == 0:
            heads = tconf.num_attention_heads
        if inter is None:  # the teacher's FFN-to-width ratio
            inter = round(width(tconf)[3] * shape.hidden / tconf.hidden_size)
        shape = StudentShape(shape.layers, shape.hidden, heads, inter)
        return prune_student(teacher, shape.resolve(tconf), sample_batches or []).train()
    if init not in ("teacher", "random"):
        # A folder made for another task (the general stage keeps its teacher's head) has a head of another
        # size: only that head is new here; its encoder is checked against the teacher's below.
        init = check_model_folder(init, "--student-init", "student-init")
        saved = AutoConfig.from_pretrained(init)
        other_head = saved.num_labels != tconf.num_labels
        student = AutoModelForSequenceClassification.from_pretrained(
            init, num_labels=tconf.num_labels, problem_type=tconf.problem_type, ignore_mismatched_sizes=other_head,
            dtype=torch.float32).train()  # fmt: skip
        c = student.config
        # distilled for the teacher's task now: its name and labels, not those of the folder's own task
        c.retort_task, c.retort_task_spec = (getattr(tconf, k, None) for k in ("retort_task", "retort_task_spec"))
        c.id2label, c.label2id = dict(tconf.id2label), dict(tconf.label2id)
        s_fam, t_fam = family_of(c), family_of(tconf)
        if s_fam.name != t_fam.name and s_fam.kernel != "linear":
            raise ConfigError(
                f"--student-init {init} is a {s_fam.name} model and the teacher a {t_fam.name}: teacher and student "
                "share a tokenizer, so the student is of the teacher's family (or retort's linear student)"
            )
        if c.vocab_size != tconf.vocab_size:
            raise ConfigError(
                f"--student-init {init} has a vocabulary of {c.vocab_size} tokens and the teacher {tconf.vocab_size}: "
                "teacher and student share a tokenizer (cross-tokenizer distillation is not supported)"
            )
        if (shape.layers, shape.hidden) != (c.num_hidden_layers, c.hidden_size):
            raise ConfigError(
                f"--student-init {init} is a {c.num_hidden_layers}x{c.hidden_size} student, not the --student "
                f"{shape} asked for (give --student {c.num_hidden_layers}x{c.hidden_size})"
            )
        if max_positions and max_positions > student.config.max_position_embeddings - position_offset(c):
            extend_position_table(student, max_positions, position_mode)
        return student
    shape = shape.resolve(tconf)
    dims = (shape.layers, shape.hidden, shape.heads, shape.intermediate)
    if attention == "linear":
        fields = {"feature_map": feature_map, **(feature_options or {})}
        student = LinearBertForSequenceClassification(linear_config(tconf, *dims, max_positions, **fields))
    else:
        student = type(teacher)(softmax_config(tconf, *dims, max_positions))
    if init == "teacher" and shape.hidden == tconf.hidden_size and shape.heads == tconf.num_attention_heads:
        copy_teacher_weights(teacher, student, position_mode)
    return student.train()


def student_from_model(path: str, teacher_config, shape: StudentShape, sample_batches: list | None) -> nn.Module:
    """A student started from another model, one with its own tokenizer (``--student-init FOLDER`` of another
    family or vocabulary; it learns the teacher's logits only): the folder's encoder with a new head for the
    teacher's task, pruned to ``shape`` by importance measured on ``sample_batches`` in its own tokens
    (``models/prune.py``, the uniform layer map) where ``shape`` is smaller than the folder's model."""
    tc = teacher_config
    source, loading = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=tc.num_labels, problem_type=tc.problem_type, ignore_mismatched_sizes=True,
        output_loading_info=True, dtype=torch.float32,
    )  # fmt: skip
    new = sorted({*loading["missing_keys"], *(k for k, *_ in loading["mismatched_keys"])})
    c = source.config
    c.retort_task, c.retort_task_spec = (getattr(tc, k, None) for k in ("retort_task", "retort_task_spec"))
    c.id2label, c.label2id = dict(tc.id2label), dict(tc.label2id)
    layers, hidden, heads, inter = width(c)
    if shape.hidden > hidden or shape.layers > layers:
        raise ConfigError(f"--student {shape}: larger than --student-init {path} ({layers}x{hidden}); give a shape "
                          f"inside it")  # fmt: skip
    if (
        (shape.layers, shape.hidden) == (layers, hidden)
        and shape.heads in (None, heads)
        and shape.intermediate in (None, inter)
    ):
        source.retort_copied = {"from": path, "copied": len(source.state_dict()) - len(new), "own": len(new)}
        return source.train()
    student = build_student(source, shape, "prune", sample_batches=sample_batches)
    copied = student.retort_copied
    student.retort_copied = {"from": path, **copied, "copied": copied["copied"] - len(new), "own": len(new)}
    return student
