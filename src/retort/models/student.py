"""Softmax (BERT) students built from the teacher's config: shape ``LxH``, initialised from teacher layers.

A student is an ordinary ``BertForSequenceClassification`` with fewer or narrower layers, so it saves
and loads with ``AutoModelForSequenceClassification`` like any other Hugging Face model.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from retort.errors import ConfigError
from retort.models import linear
from retort.models.init import copy_teacher_weights, extend_positions


@dataclass(frozen=True)
class StudentShape:
    """Layers x hidden width; heads and FFN width derived unless given."""

    layers: int
    hidden: int
    heads: int | None = None
    intermediate: int | None = None

    @classmethod
    def parse(cls, text: str, heads: int | None = None, intermediate: int | None = None) -> StudentShape:
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
        if not m:
            raise ConfigError(f"--student {text!r}: expected LAYERSxHIDDEN, for example 3x384")
        layers, hidden = int(m.group(1)), int(m.group(2))
        if layers < 1 or hidden < 1:
            raise ConfigError(f"--student {text!r}: layers and hidden must be positive")
        return cls(layers, hidden, heads, intermediate)

    def resolve(self, teacher_config) -> StudentShape:
        """Fill in heads and FFN width: the teacher's when the width matches, else hidden/64 and 4*hidden."""
        same = self.hidden == teacher_config.hidden_size
        heads = self.heads or (teacher_config.num_attention_heads if same else max(1, self.hidden // 64))
        inter = self.intermediate or (teacher_config.intermediate_size if same else 4 * self.hidden)
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
) -> nn.Module:
    """A student of ``shape`` with the teacher's vocabulary, task head type and label set.

    ``init``: ``"teacher"`` copies the embeddings, the uniformly mapped layers, the pooler and the head
    when the widths match (DistilBERT's recipe) and falls back to random weights otherwise;
    ``"random"`` leaves everything random; any other value is a checkpoint folder to load.
    ``attention="linear"`` builds retort's linear-attention student (models/linear.py) the same way;
    ``max_positions`` extends the position table past the teacher's (``position_mode``: copy or interpolate),
    or past a loaded checkpoint's (its learned rows are kept). ``feature_options`` are further
    ``LinearBertConfig`` fields of the feature map (``hedgehog_act``, ``hedgehog_qk``).
    """
    tconf = teacher.config
    if attention not in ("softmax", "linear"):
        raise ConfigError(f"attention {attention!r}: choose softmax or linear")
    if init not in ("teacher", "random"):
        if linear.is_linear_folder(init):
            student = linear.LinearBertForSequenceClassification.from_pretrained(init).train()
        else:
            student = AutoModelForSequenceClassification.from_pretrained(
                init,
                num_labels=tconf.num_labels,
                problem_type=tconf.problem_type,
                attn_implementation=tconf._attn_implementation,
            )
        c = student.config
        if (shape.layers, shape.hidden) != (c.num_hidden_layers, c.hidden_size):
            raise ConfigError(
                f"--student-init {init} is a {c.num_hidden_layers}x{c.hidden_size} student, not the --student "
                f"{shape} asked for (give --student {c.num_hidden_layers}x{c.hidden_size})"
            )
        if max_positions and max_positions > student.config.max_position_embeddings:
            extend_position_table(student, max_positions, position_mode)
        return student
    shape = shape.resolve(tconf)
    if attention == "linear":
        if shape.hidden == tconf.hidden_size and shape.heads == tconf.num_attention_heads:
            return linear.from_teacher(
                teacher, shape.layers, feature_map, init, max_positions, position_mode, **(feature_options or {})
            )
        config = linear.LinearBertConfig.from_bert(
            tconf,
            num_hidden_layers=shape.layers,
            hidden_size=shape.hidden,
            num_attention_heads=shape.heads,
            intermediate_size=shape.intermediate,
            feature_map=feature_map,
            max_position_embeddings=max_positions or tconf.max_position_embeddings,
            **(feature_options or {}),
        )
        return linear.LinearBertForSequenceClassification(config)  # random: the widths differ
    sconf = copy.deepcopy(tconf)
    sconf.num_hidden_layers = shape.layers
    sconf.hidden_size = shape.hidden
    sconf.num_attention_heads = shape.heads
    sconf.intermediate_size = shape.intermediate
    if max_positions:
        sconf.max_position_embeddings = max_positions
    student = type(teacher)(sconf)
    if init == "teacher" and shape.hidden == tconf.hidden_size:
        copy_teacher_weights(teacher, student, position_mode)
    return student


def extend_position_table(model: nn.Module, length: int, mode: str = "copy") -> None:
    """Grow a loaded model's position table to ``length`` rows in place (``linear.extend_positions``:
    the existing rows are kept), for a checkpoint trained on shorter inputs. Works for transformers' BERT
    (its ``position_ids``/``token_type_ids`` buffers grow with it) and retort's linear student."""
    emb = model.bert.embeddings
    old = emb.position_embeddings.weight.data
    table = nn.Embedding(length, old.shape[1], device=old.device, dtype=old.dtype)
    table.weight.data.copy_(extend_positions(old, length, mode))
    emb.position_embeddings = table
    if hasattr(emb, "position_ids"):
        emb.position_ids = torch.arange(length, device=old.device).expand((1, -1))
    if hasattr(emb, "token_type_ids"):
        emb.token_type_ids = torch.zeros((1, length), dtype=torch.long, device=old.device)
    model.config.max_position_embeddings = length
