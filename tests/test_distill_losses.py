"""The multi-level loss terms: zero at equality, padding has no effect, gradients reach only the
student, and golden values computed by hand."""

import math

import pytest
import torch

from retort.distill import losses

torch.manual_seed(0)
B, T, H, NH = 2, 5, 8, 2
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def scramble_padding(x: torch.Tensor, token_dims: tuple[int, ...]) -> torch.Tensor:
    """Replace every value at a padded position (along the given token dims) with noise."""
    y = x.clone()
    pad = MASK == 0
    for d in token_dims:
        idx = [slice(None)] * x.dim()
        for b in range(B):
            for t in range(T):
                if pad[b, t]:
                    idx[0], idx[d] = b, t
                    y[tuple(idx)] = torch.randn_like(y[tuple(idx)]) * 100
    return y


def test_hidden_mse_golden_zero_padding_grads():
    s = torch.randn(B, T, H, requires_grad=True)
    t = torch.randn(B, T, H, requires_grad=True)
    value = losses.hidden_mse(s, t, MASK)
    m = MASK.bool()
    expected = ((s - t)[m] ** 2).mean()  # mean over the 8 real tokens and the width
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses.hidden_mse(t, t, MASK).item() == 0.0
    assert losses.hidden_mse(scramble_padding(s, (1,)), t, MASK).item() == pytest.approx(value.item(), rel=1e-6)
    value.backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    assert s.grad[1, 3:].abs().sum() == 0  # no gradient flows into padded positions


def test_hidden_cosine():
    s = torch.randn(B, T, H)
    assert losses.hidden_cosine(s, s, MASK).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.hidden_cosine(s, -s, MASK).item() == pytest.approx(2.0, abs=1e-6)
    t = torch.randn(B, T, H)
    v = losses.hidden_cosine(s, t, MASK)
    assert losses.hidden_cosine(scramble_padding(s, (1,)), t, MASK).item() == pytest.approx(v.item(), rel=1e-6)


def test_attention_score_mse_excludes_padded_pairs():
    s = torch.randn(B, NH, T, T, requires_grad=True)
    t = torch.randn(B, NH, T, T)
    v = losses.attention_score_mse(s, t, MASK)
    # by hand: example 0 has 25 real pairs per head, example 1 has 9
    se = ((s - t) ** 2).detach()
    total = se[0].sum() + se[1, :, :3, :3].sum()
    assert v.item() == pytest.approx((total / (NH * (25 + 9))).item(), rel=1e-6)
    assert losses.attention_score_mse(scramble_padding(s.detach(), (2, 3)), t, MASK).item() == pytest.approx(
        v.item(), rel=1e-6
    )
    assert losses.attention_score_mse(t, t, MASK).item() == 0.0
    v.backward()
    assert s.grad[1, :, 3:, :].abs().sum() == 0 and s.grad[1, :, :, 3:].abs().sum() == 0


def test_attention_kl_golden_and_padding():
    s = torch.randn(B, NH, T, T)
    t = torch.randn(B, NH, T, T)
    assert losses.attention_kl(t, t, MASK).item() == pytest.approx(0.0, abs=1e-6)
    v = losses.attention_kl(s, t, MASK)
    assert losses.attention_kl(scramble_padding(s, (2, 3)), scramble_padding(t, (2, 3)), MASK).item() == pytest.approx(
        v.item(), rel=1e-5
    )
    # by hand for one row: 2 real keys
    s1 = torch.zeros(1, 1, 2, 2)
    t1 = torch.tensor([[[[math.log(3.0), 0.0], [0.0, 0.0]]]])
    kl_row0 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert losses.attention_kl(s1, t1, torch.ones(1, 2)).item() == pytest.approx(kl_row0 / 2, rel=1e-6)


def test_attention_prob_kl_matches_score_kl():
    s = torch.randn(B, NH, T, T)
    t = torch.randn(B, NH, T, T)
    probs = losses.masked_log_softmax(s, MASK).exp()
    assert losses.attention_prob_kl(probs, t, MASK).item() == pytest.approx(
        losses.attention_kl(s, t, MASK).item(), rel=1e-4
    )


def test_value_relation_any_head_count_and_padding():
    v_t = torch.randn(B, T, 12)
    assert losses.value_relation_kl(v_t, v_t, MASK, heads=4).item() == pytest.approx(0.0, abs=1e-6)
    v_s = torch.randn(B, T, 8, requires_grad=True)  # narrower student: relation heads re-split both sides
    val = losses.value_relation_kl(v_s, v_t, MASK, heads=4)
    assert val.item() > 0
    assert losses.value_relation_kl(scramble_padding(v_s.detach(), (1,)), v_t, MASK, heads=4).item() == pytest.approx(
        val.item(), rel=1e-5
    )
    val.backward()
    assert v_s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not divisible"):
        losses.value_relation_kl(v_s, v_t, MASK, heads=5)
