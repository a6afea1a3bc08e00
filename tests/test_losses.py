import math
from types import SimpleNamespace

import pytest
import torch

from retort.config import ObjectiveConfig
from retort.distill import losses
from retort.distill.objective import Distillation
from retort.distill.presets import resolve


def test_soft_kl_zero_when_equal_and_golden_value():
    z = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    assert losses.soft_kl(z, z, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # teacher probs (3/4, 1/4), student (1/2, 1/2)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert losses.soft_kl(s, t, temperature=1.0).item() == pytest.approx(kl, rel=1e-6)
    # tau = 2 divides the logits by two, and the loss is multiplied by 4
    pt = torch.softmax(t / 2, -1)[0]
    kl2 = sum(p * math.log(p / 0.5) for p in pt.tolist())
    assert losses.soft_kl(s, t, temperature=2.0).item() == pytest.approx(4 * kl2, rel=1e-6)


def test_soft_mse_and_hard():
    s = torch.tensor([[1.0], [2.0]])
    t = torch.tensor([[1.5], [2.0]])
    assert losses.soft_mse(s, t).item() == pytest.approx(0.125)
    assert losses.hard_loss(s, torch.tensor([1.0, 4.0]), regression=True).item() == pytest.approx(2.0)
    logits = torch.tensor([[0.0, 0.0]])
    assert losses.hard_loss(logits, torch.tensor([1]), regression=False).item() == pytest.approx(math.log(2))


def test_multi_label_terms():
    """Per-label sigmoids: the binary KL is 0 at a match and has its closed form, times tau^2; the hard term is
    each label's BCE averaged (label_mask leaves out rows without gold)."""
    z = torch.tensor([[1.0, -2.0, 0.5]])
    assert losses.soft_binary_kl(z, z, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)
    s, t = torch.tensor([[0.0]]), torch.tensor([[math.log(3.0)]])  # teacher p = 3/4, student 1/2
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert losses.soft_binary_kl(s, t).item() == pytest.approx(kl, rel=1e-6)
    p2 = torch.sigmoid(t / 2).item()
    kl2 = p2 * math.log(p2 / 0.5) + (1 - p2) * math.log((1 - p2) / 0.5)
    assert losses.soft_binary_kl(s, t, temperature=2.0).item() == pytest.approx(4 * kl2, rel=1e-5)
    logits, gold = torch.zeros(2, 3), torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    assert losses.hard_loss(logits, gold, False, multi_label=True).item() == pytest.approx(math.log(2))
    logits[1] = 5.0  # the second row is wrong on every label but has no gold: masked out
    masked = losses.hard_loss(logits, gold, False, torch.tensor([True, False]), multi_label=True)
    assert masked.item() == pytest.approx(math.log(2))


def test_gradients_reach_student_not_teacher():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    losses.soft_kl(s, t, 3.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_kd_terms_and_weights():
    from retort.models.outputs import ModelOutput

    mask = torch.ones(2, 3, dtype=torch.long)
    s = ModelOutput(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), mask)
    t = ModelOutput(torch.tensor([[0.0, 2.0], [2.0, 0.0]]), mask)
    conf = SimpleNamespace(model_type="bert", num_hidden_layers=2, hidden_size=8, num_attention_heads=2)
    cfg = resolve(ObjectiveConfig(method="kd", alpha=0.5, hard_weight=0.25, temperature=2.0))
    obj = Distillation(cfg, regression=False, student_config=conf, teacher_config=conf)
    assert obj.student_needs.hidden_states is False and obj.student_needs.attention_scores is False
    out = obj(s, t, {"labels": torch.tensor([1, 0])})
    assert set(out.terms) == {"soft", "hard"}
    assert out.total.item() == pytest.approx(0.5 * out.terms["soft"].item() + 0.25 * out.terms["hard"].item())
    logged = out.log_values()
    assert logged["weighted/soft"] == pytest.approx(0.5 * logged["loss/soft"])
