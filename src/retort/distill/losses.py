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


def soft_binary_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Multi-label soft targets: the binary KL(sigmoid(z_T / tau) || sigmoid(z_S / tau)) of each label,
    averaged over labels and the batch, times tau^2. (B, C), (B, C). It is BCE on the teacher's
    probabilities less their entropy, so it is 0 when the student matches; the teacher side is detached."""
    t = temperature
    s, z = student_logits / t, teacher_logits.detach().to(student_logits.dtype) / t
    p = torch.sigmoid(z)
    bce = F.binary_cross_entropy_with_logits(s, p, reduction="none")
    entropy = F.binary_cross_entropy_with_logits(z, p, reduction="none")
    return (bce - entropy).mean() * t * t


def soft_mse(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """MSE to the teacher's outputs: its score (STS-B, (B, 1)) or its logits (DSE, (B, C)), averaged."""
    return F.mse_loss(student_scores.view(-1), teacher_scores.detach().view(-1).to(student_scores.dtype))


def hard_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    regression: bool,
    label_mask: torch.Tensor | None = None,
    multi_label: bool = False,
) -> torch.Tensor:
    """Cross-entropy to the gold class (B, C) vs (B,), MSE to the gold score for regression, or for a
    multi-label task the binary cross-entropy of each label (B, C) vs multi-hot (B, C), averaged over labels;
    with ``label_mask`` (B,) the mean runs over the examples that have a gold label only."""
    if regression:
        per = F.mse_loss(logits.view(-1), labels.to(logits.dtype).view(-1), reduction="none")
    elif multi_label:
        per = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").mean(-1)
    else:
        per = F.cross_entropy(logits, labels, reduction="none")
    if label_mask is None:
        return per.mean()
    m = label_mask.to(per.dtype)
    return (per * m).sum() / m.sum().clamp_min(1.0)


# --------------------------------------------------------------------------------------------
# intermediate-layer terms. Masks: (B, T) with 1 for real tokens. Means are over real tokens
# (or real query/key pairs) only, so padding never changes a loss.


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between hidden states over real tokens. Shapes (B, T, H), (B, T, H), (B, T).

    The student side must already be projected to the teacher's width. Mean over tokens and width.
    """
    m = mask.to(student.dtype).unsqueeze(-1)  # (B, T, 1)
    se = (student - teacher.detach()).pow(2) * m
    return se.sum() / (m.sum() * student.shape[-1]).clamp_min(1.0)


def hidden_cosine(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - cos(h_S, h_T), averaged over real tokens (DistilBERT's cosine embedding loss). (B, T, H), (B, T)."""
    cos = F.cosine_similarity(student, teacher.detach(), dim=-1)  # (B, T)
    m = mask.to(student.dtype)
    return ((1.0 - cos) * m).sum() / m.sum().clamp_min(1.0)


def pair_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, 1, T, T): 1 where both the query and the key are real tokens."""
    m = mask.to(torch.bool)
    return m[:, None, :, None] & m[:, None, None, :]


def attention_score_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT's attention loss: MSE between pre-softmax scores, over real (query, key) pairs only.

    Shapes (B, nh, T, T), (B, nh, T, T), (B, T). Masked positions are excluded, not zeroed-and-counted.
    """
    pm = pair_mask(mask).to(student.dtype)  # (B, 1, T, T)
    se = (student - teacher.detach()).pow(2) * pm
    return se.sum() / (pm.sum() * student.shape[1]).clamp_min(1.0)


def masked_log_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log softmax over keys with padded keys removed. (B, nh, T, T), (B, T) -> (B, nh, T, T)."""
    key_mask = mask.to(torch.bool)[:, None, None, :]
    return F.log_softmax(scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min), dim=-1)


def row_kl(log_p_teacher: torch.Tensor, log_p_student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(p_T || p_S) of each query row over keys, averaged over heads and real query rows.

    Shapes (B, nh, T, T) log-probabilities, (B, T) mask. Padded keys have p_T = 0 and contribute 0.
    """
    p_t = log_p_teacher.detach().exp()
    key_mask = mask.to(torch.bool)[:, None, None, :]
    kl = torch.where(key_mask, p_t * (log_p_teacher.detach() - log_p_student), torch.zeros_like(p_t)).sum(-1)
    q = mask.to(kl.dtype)[:, None, :]  # (B, 1, T)
    return (kl * q).sum() / (q.sum() * kl.shape[1]).clamp_min(1.0)


def attention_kl(student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MiniLM's attention transfer: KL between the attention distributions of each query (from scores)."""
    return row_kl(masked_log_softmax(teacher_scores, mask), masked_log_softmax(student_scores, mask), mask)


def attention_prob_kl(
    student_probs: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    """KL from the teacher's softmax distribution to a student map given as probabilities
    (a linear-attention student's normalised phi(Q) phi(K)^T / Z)."""
    return row_kl(masked_log_softmax(teacher_scores, mask), student_probs.clamp_min(eps).log(), mask)


def relation_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, H) -> (B, heads, T, H/heads): re-split a layer's vectors into relation heads (MiniLMv2)."""
    b, t, h = x.shape
    if h % heads:
        raise ValueError(f"width {h} is not divisible by {heads} relation heads")
    return x.view(b, t, heads, h // heads).transpose(1, 2)


def value_relation_kl(
    student_values: torch.Tensor, teacher_values: torch.Tensor, mask: torch.Tensor, heads: int
) -> torch.Tensor:
    """MiniLM's value relation: KL between softmax(V V^T / sqrt(d)) of teacher and student.

    Values are (B, T, H) (heads concatenated) and are re-split into ``heads`` relation heads, so
    student and teacher may have different head counts and widths. Mask (B, T).
    """
    s = relation_heads(student_values, heads)
    t = relation_heads(teacher_values.detach(), heads)
    s_rel = s @ s.transpose(-1, -2) / s.shape[-1] ** 0.5  # (B, heads, T, T)
    t_rel = t @ t.transpose(-1, -2) / t.shape[-1] ** 0.5
    return attention_kl(s_rel, t_rel, mask)
