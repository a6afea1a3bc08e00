"""How a student is made from its teacher, in one place: which teacher layer each student layer is
copied from, the copy itself (checked: a tensor the student needs and the teacher lacks, or has in
another shape, is an error, never a silent random init), and position tables grown past the teacher's.
Used by the softmax students (``student.py``) and the linear-attention student (``linear.py``) alike,
so neither imports the other's file for it."""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from retort.errors import ConfigError
from retort.models import layer_map


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """0-based teacher layer that student layer m (0-based) is copied from: TinyBERT's uniform map."""
    return [t - 1 for t in layer_map.uniform(student_layers, teacher_layers)]


def extend_positions(weight: torch.Tensor, length: int, mode: str = "copy") -> torch.Tensor:
    """Position embeddings for ``length`` positions from a (P, H) table.

    ``copy`` repeats the P learned rows (positions P..2P-1 reuse 0..P-1, as Longformer does), so every
    local pattern the teacher learned stays; ``interpolate`` stretches the table linearly over the new
    length. The first P rows are unchanged by ``copy``.
    """
    p = weight.shape[0]
    if length <= p:
        return weight[:length].clone()
    if mode == "copy":
        return weight.repeat(math.ceil(length / p), 1)[:length].clone()
    if mode == "interpolate":
        return F.interpolate(weight.T[None], size=length, mode="linear", align_corners=True)[0].T.contiguous()
    raise ValueError(f"position extension {mode!r}: choose copy or interpolate")


def copy_teacher_weights(teacher: nn.Module, student: nn.Module, position_mode: str = "copy") -> list[int]:
    """Copy embeddings, mapped layers, pooler and classifier from teacher into a same-width student
    (softmax or linear: both use transformers' BERT parameter names); positions past the teacher's
    table are made with ``extend_positions``."""
    t_layers = teacher.config.num_hidden_layers
    s_layers = student.config.num_hidden_layers
    mapping = uniform_layer_map(s_layers, t_layers)
    t_state = teacher.state_dict()
    new_state = {}
    for key in student.state_dict():
        m = re.search(r"\.layer\.(\d+)\.", key)
        src = key.replace(f".layer.{m.group(1)}.", f".layer.{mapping[int(m.group(1))]}.", 1) if m else key
        if src not in t_state:
            continue
        w, want = t_state[src], student.state_dict()[key].shape
        if key.endswith("position_embeddings.weight") and w.shape != want:
            w = extend_positions(w, want[0], position_mode)
        if w.shape == want:
            new_state[key] = w
        elif not _own_to_the_student(key):
            raise ConfigError(
                f"teacher tensor {src} has shape {tuple(w.shape)}; the student's {key} needs {tuple(want)}"
            )
    missing = [k for k in student.state_dict() if k not in new_state and not _own_to_the_student(k)]
    if missing:
        raise ConfigError(
            f"{len(missing)} student tensors have no teacher tensor to copy (first: {missing[0]}); "
            f"is the teacher a {type(teacher).__name__} of the student's family?"
        )
    student.load_state_dict(new_state, strict=False)
    student.retort_copied = {"copied": len(new_state), "own": len(student.state_dict()) - len(new_state)}
    return mapping


def _own_to_the_student(key: str) -> bool:
    """Parameters the teacher cannot have: a linear student's feature maps (learned or random features)."""
    return ".feature_map." in key or key.endswith("attention.self.proj")
