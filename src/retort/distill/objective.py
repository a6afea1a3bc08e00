"""Objectives: named, weighted sums of loss terms. They are ``nn.Module``s so that anything with
parameters (projections, layer weights) lands in the state dict, the optimizer and checkpoints.

An objective states which intermediate outputs it reads (``needs``) and returns the total loss plus
every term, weighted and unweighted, for the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from retort.distill import losses
from retort.models.outputs import ModelOutput, Needs


@dataclass
class LossOutput:
    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # unweighted value of each term
    weights: dict[str, float] = field(default_factory=dict)  # weight each term entered the total with

    def log_values(self) -> dict[str, float]:
        """``loss``, ``loss/NAME`` (unweighted) and ``weighted/NAME`` for the log."""
        out = {"loss": float(self.total.detach())}
        for name, value in self.terms.items():
            v = float(value.detach())
            out[f"loss/{name}"] = v
            out[f"weighted/{name}"] = v * self.weights.get(name, 1.0)
        return out


class Objective(nn.Module):
    """Base class: ``forward(student, teacher, batch) -> LossOutput``."""

    student_needs = Needs()
    teacher_needs = Needs()
    uses_teacher = True

    def formula(self) -> str:
        raise NotImplementedError

    def combine(self, terms: dict[str, torch.Tensor], weights: dict[str, float]) -> LossOutput:
        active = {k: v for k, v in terms.items() if weights.get(k, 0.0) != 0.0}
        total = sum(weights[k] * v for k, v in active.items())
        return LossOutput(total=total, terms=active, weights={k: weights[k] for k in active})


class FineTune(Objective):
    """Plain supervised fine-tuning (the teacher's own training): the hard loss alone."""

    uses_teacher = False

    def __init__(self, regression: bool):
        super().__init__()
        self.regression = regression

    def formula(self) -> str:
        return "L = L_hard"

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch) -> LossOutput:
        terms = {"hard": losses.hard_loss(student.logits, batch["labels"], self.regression)}
        return self.combine(terms, {"hard": 1.0})


class LogitKD(Objective):
    """Hinton KD: alpha * L_soft (temperature-softened teacher logits) + hard_weight * L_hard.

    For regression (STS-B) the soft term is the MSE to the teacher's score and ignores the temperature.
    """

    def __init__(self, regression: bool, alpha: float = 1.0, hard_weight: float = 0.0, temperature: float = 1.0):
        super().__init__()
        self.regression = regression
        self.weights = {"soft": alpha, "hard": hard_weight}
        self.temperature = temperature

    def formula(self) -> str:
        soft = "MSE(s_S, s_T)" if self.regression else f"KL(p_T^tau || p_S^tau)*tau^2, tau={self.temperature}"
        return f"L = {self.weights['soft']} * L_soft[{soft}] + {self.weights['hard']} * L_hard"

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, batch) -> LossOutput:
        if teacher is None:
            raise ValueError("LogitKD needs teacher outputs")
        if self.regression:
            soft = losses.soft_mse(student.logits, teacher.logits)
        else:
            soft = losses.soft_kl(student.logits, teacher.logits, self.temperature)
        terms = {"soft": soft}
        if self.weights["hard"] and "labels" in batch:
            terms["hard"] = losses.hard_loss(student.logits, batch["labels"], self.regression)
        return self.combine(terms, self.weights)
