"""Loss terms as pure functions over tensors. Each returns a scalar; none reads global state."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(z_T / tau) || softmax(z_S / tau)) * tau^2, averaged over the batch (Hinton et al.).

    Shapes: (B, C) and (B, C). The tau^2 factor keeps gradient sizes comparable across temperatures.
    The teacher side is detached: no gradient ever reaches the teacher through this term.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * t * t


def soft_mse(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """MSE to the teacher's predicted score (regression tasks such as STS-B). Shapes: (B, 1) or (B,)."""
    return F.mse_loss(student_scores.view(-1), teacher_scores.detach().view(-1).to(student_scores.dtype))


def hard_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Cross-entropy to the gold class (B, C) vs (B,), or MSE to the gold score for regression."""
    if regression:
        return F.mse_loss(logits.view(-1), labels.to(logits.dtype).view(-1))
    return F.cross_entropy(logits, labels)
