"""What the objective compares the student with, one batch at a time: the teacher's outputs, read from
precomputed logits, from the teacher-output cache, or from a teacher pass run now."""

from __future__ import annotations

import torch

from retort.distill.teacher_cache import TeacherOutputCache
from retort.models.outputs import ModelOutput, Needs, forward
from retort.training.assembly import TrainingSetup


def teacher_outputs(
    setup: TrainingSetup, teacher, cache: TeacherOutputCache | None, idx: list[int], batch: dict, device
) -> ModelOutput | None:
    """The teacher's side of one batch (rows ``idx``): precomputed logits (DSE, long inputs; popped from
    ``batch``), the cache's copy of an earlier pass, or a teacher run now under ``inference_mode`` (kept in
    the cache, when there is one); None when the objective reads no teacher."""
    objective = setup.objective
    if "teacher_logits" in batch and objective.teacher_needs == Needs():
        return ModelOutput(batch.pop("teacher_logits"), batch["attention_mask"])
    if cache is not None and cache.has(idx):
        return cache.get(idx, batch["attention_mask"]).to(device)
    if teacher is None or not objective.uses_teacher:
        return None
    if setup.info.get("student_tokenizer"):  # the teacher reads other token ids: its logits come precomputed
        raise RuntimeError("a student with its own tokenizer got rows without the teacher's precomputed logits")
    with torch.inference_mode():
        t_out = forward(teacher, batch, objective.teacher_needs)
    t_out = t_out.detached()
    if cache is not None:
        cache.put(idx, t_out)
    return t_out
