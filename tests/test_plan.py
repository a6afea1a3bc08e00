"""The compression planner (issue #30): shapes, the cost model fitted on timed shapes, the candidate grid and
the plan (what is trained, what is left out and why). Pure arithmetic: no model is built or timed."""

from __future__ import annotations

import pytest

from retort.deploy.plan import (
    Budget,
    CostModel,
    Shape,
    candidate_shapes,
    make_plan,
    training_seconds,
    worth_timing,
)
from retort.errors import ConfigError

MINILM = Shape(6, 384, 12, 1536)  # all-MiniLM-L6-v2
TRUE = CostModel(overhead_ms=0.3, layer_ms=0.4, mmac_ms=0.02)  # about onnxruntime int8 here at 14 tokens
TEACHER_MS = TRUE.predict(MINILM, 14.0)  # 5.69 ms


def test_parameters_match_transformers():
    from transformers import BertConfig, BertForSequenceClassification

    for shape in (Shape(2, 64, 2, 128), Shape(1, 96, 3, 384)):
        config = BertConfig(vocab_size=500, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                            num_attention_heads=shape.heads, intermediate_size=shape.ffn, max_position_embeddings=64,
                            num_labels=3)  # fmt: skip
        want = sum(p.numel() for p in BertForSequenceClassification(config).parameters())
        assert shape.parameters(vocab=500, positions=64, labels=3) == want
    assert Shape(4, 256, 8, 512).name == "4x256-f512" and Shape(3, 384, 12, 1536).name == "3x384"


def test_cost_model_recovers_its_coefficients_and_needs_two_depths():
    shapes = [MINILM, Shape(1, 128, 4, 512), Shape(2, 256, 8, 1024), Shape(3, 192, 6, 384)]
    points = [(s, 14.0, TRUE.predict(s, 14.0)) for s in shapes]
    fitted = CostModel.fit(points)
    assert fitted.overhead_ms == pytest.approx(0.3) and fitted.layer_ms == pytest.approx(0.4)
    assert fitted.mmac_ms == pytest.approx(0.02)
    assert max(map(abs, fitted.relative_errors(points))) < 1e-9
    with pytest.raises(ConfigError, match="at least two depths"):
        CostModel.fit([(Shape(2, 64, 2, 256), 14.0, 1.0), (Shape(2, 128, 4, 512), 14.0, 2.0), (MINILM, 9.0, 3.0)][1:])
    with pytest.raises(ConfigError, match="positive numbers"):
        CostModel.fit([(s, 14.0, -1.0) for s in shapes])


def test_candidates_keep_the_head_size_and_stay_inside_the_teacher():
    shapes = candidate_shapes(MINILM, head_size=32)
    assert MINILM not in shapes and Shape(4, 256, 8, 512) in shapes and Shape(3, 384, 12, 1536) in shapes
    assert all(s.hidden % 64 == 0 and s.hidden // s.heads == 32 and s.ffn <= 1536 and s.layers <= 6 for s in shapes)
    assert [s.macs(32) for s in shapes] == sorted(s.macs(32) for s in shapes)


def test_plan_trains_the_widest_that_meet_and_the_nearest_miss():
    """Three that meet the budget, one per width from the widest, the deepest at each (at least half the
    teacher's depth), and the miss."""
    plan = make_plan(MINILM, TEACHER_MS, TRUE, Budget(speedup=2), 14.0, 32, 30522, 512, 1)
    target = TEACHER_MS / 2
    assert plan["target_ms"] == pytest.approx(target) and plan["met"]
    rows = {r["name"]: r for r in plan["candidates"]}
    chosen = [rows[n] for n in plan["train"]]
    inside = [r for r in chosen if r["role"] == "meets the budget"]
    assert len(inside) == 3 and all(r["predicted_ms"] <= target for r in inside)
    meeting = [r for r in plan["candidates"] if r["meets"] and r["layers"] >= 3]
    widths = sorted({r["hidden"] for r in meeting}, reverse=True)[:3]
    assert [r["hidden"] for r in inside] == widths
    for r in inside:  # the deepest of its width, then the widest FFN
        same = [m for m in meeting if m["hidden"] == r["hidden"]]
        assert (r["layers"], r["ffn"]) == max((m["layers"], m["ffn"]) for m in same)
    (miss,) = [r for r in chosen if r["role"].startswith("nearest miss")]
    assert miss["predicted_ms"] == min(r["predicted_ms"] for r in plan["candidates"] if r["predicted_ms"] > target)
    left = [r for r in plan["candidates"] if not r["chosen"]]
    assert all(r["why_not"] for r in left)


def test_plan_with_a_size_budget_and_budgets_that_cannot_be_met():
    plan = make_plan(MINILM, TEACHER_MS, TRUE, Budget(max_params=9_000_000), 14.0, 32, 30522, 512, 1)
    assert plan["met"] and all(r["parameters"] <= 9_000_000 for r in plan["candidates"] if r["chosen"])
    plan = make_plan(MINILM, TEACHER_MS, TRUE, Budget(speedup=10, max_params=3_000_000), 14.0, 32, 30522, 512, 1)
    assert not plan["met"] and len(plan["closest"]) == 3
    plan = make_plan(MINILM, TEACHER_MS, TRUE, Budget(speedup=200), 14.0, 32, 30522, 512, 1)
    assert not plan["met"] and plan["train"] == [] and plan["closest"][0].startswith("1x64-f128 (")
    assert "faster than an empty model here" in plan["unreachable"]
    assert all("under an empty call" in r["why_not"] for r in plan["candidates"])
    with pytest.raises(ConfigError, match="give a budget"):
        Budget()
    # over the PyTorch teacher, over its own export (same engine), a latency: the tightest is the target
    assert Budget(speedup=10, speedup_backend=3).target_ms(20.0, 3.0) == 1.0
    assert Budget(speedup=10, speedup_backend=3).target_ms(20.0, 9.0) == 2.0
    assert Budget(speedup_backend=3, latency_ms=0.5).target_ms(20.0, 3.0) == 0.5
    with pytest.raises(ConfigError, match="--speedup nan"):
        Budget(speedup=float("nan"))


def test_training_time_is_arithmetic_at_the_measured_rate():
    student = Shape(4, 256, 8, 1024)
    rate = 1e-3  # seconds per million multiply-adds
    t = training_seconds(student, MINILM, rate, tokens=20.0, rows=1000, epochs=3)
    assert set(t) == {"task"}
    assert t["task"] == pytest.approx(rate * 1000 * (9 * student.macs(20.0) + MINILM.macs(20.0)) / 1e6)
    g = training_seconds(student, MINILM, rate, tokens=20.0, rows=1000, epochs=3, sequences=800)
    assert g["task"] == t["task"] and g["general"] == pytest.approx(
        rate * 800 * (3 * student.macs(128) + MINILM.macs(128)) / 1e6)  # fmt: skip
    longer = training_seconds(student, MINILM, rate, tokens=20.0, rows=1000, epochs=6)
    assert t["task"] < longer["task"] < 2 * t["task"]  # the teacher's cached forward is paid once


def test_a_busy_machine_is_said_before_timing(monkeypatch):
    from retort import machine

    stats = iter(["cpu  100 0 100 800 0 0 0 0 0 0", "cpu  260 0 120 820 0 0 0 0 0 0"])  # 180 of 200 ticks busy
    monkeypatch.setattr(machine.Path, "read_text", lambda self: next(stats))
    assert "other processes used 90% of its" in machine.busy(2, seconds=0)
    stats = iter(["cpu  100 0 100 800 0 0 0 0 0 0", "cpu  110 0 100 990 0 0 0 0 0 0"])  # 10 of 200
    assert machine.busy(2, seconds=0) is None


def test_timed_probes_overrule_the_cost_model_and_the_shortlist_shrinks():
    """The plan times the shapes that decide it: per width the deepest near the target, and the chosen; a
    timed shape's own time replaces the prediction, and a width whose timed shape meets is not timed again."""
    budget = Budget(speedup=3)
    plan = make_plan(MINILM, TEACHER_MS, TRUE, budget, 14.0, 32, 30522, 512, 1)
    target = plan["target_ms"]
    todo = worth_timing(plan, min_layers=3)
    rows = {r["name"]: r for r in plan["candidates"]}
    assert set(plan["train"]) <= set(todo) and 0 < len(todo) <= 8
    assert all(rows[n]["predicted_ms"] <= 1.25 * target and rows[n]["layers"] >= 3 for n in todo)
    assert len({rows[n]["hidden"] for n in todo}) == len(todo) or set(plan["train"]) & set(todo)
    first = next(n for n in plan["train"] if rows[n]["role"] == "meets the budget")
    slow = {first: 2 * target}  # the widest chosen shape, timed: twice the target after all
    again = make_plan(MINILM, TEACHER_MS, TRUE, budget, 14.0, 32, 30522, 512, 1, timed=slow)
    rows2 = {r["name"]: r for r in again["candidates"]}
    assert rows2[first]["latency_from"] == "timed probe" and rows2[first]["predicted_ms"] == 2 * target
    assert not rows2[first]["meets"] and first not in again["train"]
    assert first not in worth_timing(again, min_layers=3)
    fast = {n: 0.5 * target for n in worth_timing(plan, min_layers=3)}  # every deciding shape meets
    done = make_plan(MINILM, TEACHER_MS, TRUE, budget, 14.0, 32, 30522, 512, 1, timed=fast)
    assert worth_timing(done, min_layers=3) == [n for n in done["train"] if n not in fast]


def test_headroom_plans_under_the_target_and_keeps_the_budget():
    plan = make_plan(MINILM, TEACHER_MS, TRUE, Budget(speedup=3), 14.0, 32, 30522, 512, 1, headroom=0.1)
    assert plan["target_ms"] == pytest.approx(TEACHER_MS / 3)
    assert plan["plan_target_ms"] == pytest.approx(0.9 * TEACHER_MS / 3)
    inside = [r for r in plan["candidates"] if r.get("role") == "meets the budget"]
    assert inside and all(r["predicted_ms"] <= plan["plan_target_ms"] for r in inside)
