"""Model selection during training, through an evaluator (as sentence-transformers' evaluators): the
loop asks it for the model's results at each evaluation and keeps the model whose score is best.

An evaluator is any object with

- ``evaluate(model, device) -> results``: ``{split: {metric: value}}``, what the log and
  ``metrics.json`` record; it is given the model in training mode, and gives it back in that mode
  (dropout off while it measures, no gradient);
- ``score(results) -> float``: the one number the best model is picked by;
- ``greater_is_better``: whether a higher score is better;
- optionally ``losses``: the objective's held-out loss terms (``{"loss": ..., "loss/NAME": ...}``) that
  its last ``evaluate`` measured anyway, which the loop then records instead of measuring them again.

``default_evaluator(setup)`` is what ``fit`` uses when given none: the task's metrics on the dev splits
(``TaskEvaluator``), or for general distillation, which has no task output yet, the objective's loss on
the held-out corpus sequences (``HeldOutLossEvaluator``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from retort.data.batching import Encoded, collate, eval_order
from retort.data.glue import Task
from retort.evaluation.evaluator import evaluate, selection_score
from retort.evaluation.metrics import compute_metrics, predictions
from retort.models.outputs import forward
from retort.rows import in_row_order
from retort.training.assembly import TrainingSetup
from retort.training.targets import teacher_outputs


class Evaluator(Protocol):
    """What the loop selects the best model by (see the module docstring)."""

    greater_is_better: bool

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, dict[str, float]]:
        """``{split: {metric: value}}`` for the model as it is now."""
        ...

    def score(self, results: dict[str, dict[str, float]]) -> float:
        """The number of ``results`` that picks the best model."""
        ...


class TaskEvaluator:
    """The task's metrics on labelled splits; selection on the primary metric, averaged over the splits."""

    greater_is_better = True

    def __init__(self, task: Task, splits: dict[str, Encoded], batch_size: int = 128, pad_id: int = 0):
        self.task, self.splits, self.batch_size, self.pad_id = task, splits, batch_size, pad_id

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, dict[str, float]]:
        """``{split: {metric: value, ..., "score": mean}}`` for each split (``evaluation.evaluator.evaluate``)."""
        return evaluate(model, self.task, self.splits, self.batch_size, device, self.pad_id)

    def score(self, results: dict[str, dict[str, float]]) -> float:
        """The task's primary metric, averaged over the splits (``evaluation.evaluator.selection_score``)."""
        return selection_score(self.task, results)


class HeldOutLossEvaluator:
    """The objective's loss on held-out rows (general distillation's held-out corpus sequences): lower is
    better. Keeps every term of its last measurement in ``losses``."""

    greater_is_better = False

    def __init__(self, setup: TrainingSetup, data: Encoded, split: str = "heldout"):
        self.setup, self.data, self.split = setup, data, split
        self.losses: dict[str, float] | None = None

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, dict[str, float]]:
        """``{split: {"loss": mean}}``: the objective's total on the held-out rows, dropout off."""
        pad_id = self.setup.tokenizer.pad_token_id or 0
        self.losses = heldout_loss(self.setup, model, self.data, device, pad_id)
        return {self.split: {"loss": self.losses["loss"]}}

    def score(self, results: dict[str, dict[str, float]]) -> float:
        """The held-out loss."""
        return results[self.split]["loss"]


def default_evaluator(setup: TrainingSetup) -> Evaluator:
    """Today's selection: the held-out loss for general distillation, else the task's metrics on the
    setup's dev splits (the ``--val-split`` rows when there are some)."""
    if setup.cfg.general:  # no task output yet: the objective's loss on held-out corpus sequences
        return HeldOutLossEvaluator(setup, setup.dev["heldout"])
    pad_id = setup.tokenizer.pad_token_id or 0
    cfg = setup.cfg
    if set(setup.dev) == {"val"} and not cfg.dse and not cfg.long_sts_tokens:  # the loss is measured there anyway
        return ValTaskEvaluator(setup, pad_id)
    return TaskEvaluator(setup.task, setup.dev, setup.cfg.eval_batch_size, pad_id)


class ValTaskEvaluator(TaskEvaluator):
    """The task's metrics on the ``--val-split`` rows and the objective's held-out loss there, from one student
    pass: the loop records the loss at every evaluation, and the metrics come from the logits of that same pass
    (``losses`` holds its terms). Where the objective's pass gives no logits, the metrics take a pass of their own."""

    def __init__(self, setup: TrainingSetup, pad_id: int):
        super().__init__(setup.task, setup.dev, setup.cfg.eval_batch_size, pad_id)
        self.setup, self.losses = setup, None

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, dict[str, float]]:
        """``{"val": {metric: value, ..., "score": mean}}``; the held-out loss terms in ``losses``."""
        data, parts = self.splits["val"], []
        self.losses = heldout_loss(self.setup, model, data, device, self.pad_id, keep_logits=parts)
        if not parts or any(logits is None for _, logits in parts):
            return super().evaluate(model, device)
        logits = in_row_order(parts, len(data))
        return {"val": compute_metrics(self.task.metrics, predictions(self.task, logits), np.asarray(data.labels))}


@torch.inference_mode()
def heldout_loss(
    setup: TrainingSetup, model: nn.Module, data: Encoded, device, pad_id: int, keep_logits: list | None = None
) -> dict[str, float]:
    """The objective on held-out rows (``--val-split`` rows, or general distillation's held-out corpus
    sequences), dropout off: the total (``loss``) and each unweighted term (``loss/NAME``), per-row means.
    The teacher's outputs on the --val-split rows are kept in their own cache (``setup.val_cache``) the first
    time, so that later evaluations run the student alone; other held-out rows run the teacher each time.
    ``keep_logits`` receives ``(row indices, the student's logits as numpy or None)`` for every batch."""
    objective = setup.objective
    was = model.training, objective.training
    model.eval()
    objective.eval()
    sums: dict[str, float] = {}
    try:
        for idx in eval_order(data.lengths, setup.cfg.eval_batch_size):
            batch = {k: v.to(device) for k, v in collate(data, idx, pad_id).items()}
            cache = setup.val_cache if data is setup.dev.get("val") else None
            t_out = teacher_outputs(setup, setup.teacher, cache, idx, batch, device)
            s_out = forward(model, batch, objective.student_needs)
            if keep_logits is not None:
                logits = None if s_out.logits is None else s_out.logits.float().cpu().numpy().copy()
                keep_logits.append((idx, logits))
            values = objective(s_out, t_out, batch).log_values()
            for k, v in values.items():
                if k == "loss" or k.startswith("loss/"):
                    sums[k] = sums.get(k, 0.0) + v * len(idx)
    finally:
        model.train(was[0])
        objective.train(was[1])
    return {k: v / max(len(data), 1) for k, v in sums.items()}
