"""Which teacher layer each student layer learns from.

Layers are numbered from 1 (layer 0 is the embedding output, used by the hidden-state term when
``embeddings`` is on). A map is a list: ``map[m - 1]`` is the teacher layer that student layer m learns.
"""

from __future__ import annotations

from retort.errors import ConfigError


def uniform(student_layers: int, teacher_layers: int) -> list[int]:
    """TinyBERT's map: student layer m learns teacher layer m * k, with k = teacher / student layers."""
    if student_layers > teacher_layers:
        raise ConfigError(
            f"uniform layer map: a {student_layers}-layer student is deeper than the {teacher_layers}-layer teacher"
        )
    return [round(m * teacher_layers / student_layers) for m in range(1, student_layers + 1)]


def last(student_layers: int, teacher_layers: int) -> list[int]:
    """The student's layers learn the teacher's last ``student_layers`` layers."""
    if student_layers > teacher_layers:
        raise ConfigError(
            f"last layer map: a {student_layers}-layer student is deeper than the {teacher_layers}-layer teacher"
        )
    return list(range(teacher_layers - student_layers + 1, teacher_layers + 1))


def build(kind: str, student_layers: int, teacher_layers: int, explicit: list[int] | None = None) -> list[int]:
    """``uniform``, ``last`` or ``list`` (with ``explicit``: one teacher layer per student layer)."""
    if kind == "uniform":
        return uniform(student_layers, teacher_layers)
    if kind == "last":
        return last(student_layers, teacher_layers)
    if kind == "list":
        if not explicit or len(explicit) != student_layers:
            raise ConfigError(
                f"layer map list {explicit}: needs one teacher layer for each of the {student_layers} student layers"
            )
        bad = [t for t in explicit if not 1 <= t <= teacher_layers]
        if bad:
            raise ConfigError(f"layer map list {explicit}: teacher layers must be 1..{teacher_layers}, got {bad}")
        return list(explicit)
    raise ConfigError(f"layer map {kind!r}: choose uniform, last or list")
