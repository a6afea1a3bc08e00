import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import train_tiny_teacher
from retort.config import ObjectiveConfig, TrainConfig
from retort.data.tasks import get_task
from retort.distill.layer_weights import LayerWeights
from retort.distill.objective import Distillation
from retort.distill.presets import PRESETS, resolve
from retort.errors import ConfigError
from retort.models import layer_map
from retort.models.hf import load_classifier
from retort.models.outputs import Needs, forward
from retort.models.student import StudentShape, build_student
from retort.training.assembly import prepare
from retort.training.loop import fit


def test_layer_maps():
    assert layer_map.uniform(3, 6) == [2, 4, 6]
    assert layer_map.uniform(4, 6) == [2, 3, 4, 6]
    assert layer_map.last(2, 6) == [5, 6]
    assert layer_map.build("list", 2, 6, [1, 6]) == [1, 6]
    with pytest.raises(ConfigError, match="one teacher layer for each"):
        layer_map.build("list", 3, 6, [1, 6])
    with pytest.raises(ConfigError, match=r"teacher layers must be 1..6"):
        layer_map.build("list", 2, 6, [0, 7])
    with pytest.raises(ConfigError, match="deeper than"):
        layer_map.uniform(8, 6)


def test_static_and_learned_weights():
    losses = torch.tensor([1.0, 2.0, 3.0])
    w, reg = LayerWeights(3, "static")(losses)
    assert torch.equal(w, torch.ones(3)) and reg == 0
    lw = LayerWeights(3, "learned", floor=0.2)
    with torch.no_grad():
        lw.theta.copy_(torch.tensor([50.0, -50.0, -50.0]))  # try to collapse onto layer 0
    w, reg = lw(losses)
    assert w.sum().item() == pytest.approx(3.0)
    assert w.min().item() == pytest.approx(0.2, rel=1e-4)  # the floor holds
    assert reg.item() > 0 and "theta" in dict(lw.named_parameters())


def test_loss_based_weights_favour_the_slow_layer():
    lw = LayerWeights(2, "loss", temperature=0.1, window=5)
    for step in range(30):
        w, _ = lw(torch.tensor([1.0 * 0.9**step, 1.0]))  # layer 0 improves, layer 1 is stuck
    assert w.sum().item() == pytest.approx(2.0)
    assert w[1] > w[0]
    state = lw.state_dict()
    assert {"ema", "history", "steps"} <= set(state) and int(state["steps"]) == 30
    lw.eval()
    assert torch.equal(lw(torch.tensor([5.0, 5.0]))[0], lw.current())


def test_presets_fill_only_unset_fields():
    cfg = resolve(ObjectiveConfig(method="multilevel", beta=3.0))
    assert cfg.beta == 3.0 and cfg.gamma == PRESETS["multilevel"]["gamma"] and cfg.layer_weights == "loss"
    assert resolve(ObjectiveConfig(method="minilm")).attention_layers == "last"
    with pytest.raises(ConfigError, match="--method.*choose from kd, distilbert"):
        resolve(ObjectiveConfig(method="pkd"))


def _models(tiny_model, shape):
    teacher = load_classifier(str(tiny_model), get_task("RTE"))
    return teacher, build_student(teacher, shape)


def _batch():
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 10, 11, 3, 0]])
    return {
        "input_ids": ids,
        "token_type_ids": torch.zeros_like(ids),
        "attention_mask": (ids != 0).long(),
        "labels": torch.tensor([0, 1]),
    }


def test_outputs_capture_scores_and_values(tiny_model):
    teacher, _ = _models(tiny_model, StudentShape(2, 32))
    teacher.eval()
    out = forward(teacher, _batch(), Needs(hidden_states=True, attention_scores=True, values=True))
    assert len(out.hidden_states) == 5 and out.attention_scores[0].shape == (2, 4, 5, 5)
    assert out.values[0].shape == (2, 5, 32)
    # the captured scores reproduce the eager attention probabilities
    eager = load_classifier(str(tiny_model), get_task("RTE"), attn_implementation="eager").eval()
    eager.load_state_dict(teacher.state_dict())
    probs = eager(**{k: v for k, v in _batch().items() if k != "labels"}, output_attentions=True).attentions
    mine = torch.softmax(
        out.attention_scores[1].masked_fill(_batch()["attention_mask"][:, None, None, :] == 0, -1e9), -1
    )
    assert torch.allclose(mine, probs[1], atol=1e-5)


def test_multilevel_projections_for_a_narrow_student(tiny_model):
    teacher, student = _models(tiny_model, StudentShape(2, 16))
    obj = Distillation(
        resolve(ObjectiveConfig(method="multilevel", head_average=True)), False, student.config, teacher.config
    )
    assert obj.proj is not None and len(obj.proj) == 3  # embeddings + 2 layers
    assert any(k.startswith("proj.0.weight") for k in obj.state_dict())
    t = forward(teacher.eval(), _batch(), obj.teacher_needs)
    s = forward(student, _batch(), obj.student_needs)
    out = obj(s, t, _batch())
    assert {"soft", "hard", "hidden", "attn"} <= set(out.terms)
    out.total.backward()
    assert obj.proj[0].weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    assert "layer_weight/hidden/0" in out.log_values()


def test_gamma_decays_over_the_schedule(tiny_model):
    teacher, student = _models(tiny_model, StudentShape(2, 32))
    obj = Distillation(resolve(ObjectiveConfig(method="multilevel", gamma=2.0, gamma_schedule="decay")), False,
                     student.config, teacher.config)  # fmt: skip
    t = forward(teacher.eval(), _batch(), obj.teacher_needs)
    s = forward(student, _batch(), obj.student_needs)
    assert obj(s, t, _batch()).weights["attn"] == 2.0  # the first step: full weight
    obj.progress = 0.75
    out = obj(s, t, _batch())
    assert out.weights["attn"] == pytest.approx(0.5) and out.weights["hidden"] == 1.0
    assert "decays" in obj.formula()
    obj.progress = 1.0
    assert "attn" not in obj(s, t, _batch()).terms  # weight 0: the term is left out


def test_head_mismatch_is_a_clear_error(tiny_model):
    teacher, student = _models(tiny_model, StudentShape(2, 16))
    with pytest.raises(ConfigError, match="head_average"):
        Distillation(resolve(ObjectiveConfig(method="tinybert")), False, student.config, teacher.config)


def test_stages_select_terms(tiny_model):
    teacher, student = _models(tiny_model, StudentShape(2, 32))
    inter = Distillation(
        resolve(ObjectiveConfig(method="tinybert", stage="intermediate")), False, student.config, teacher.config
    )
    assert inter.weights["soft"] == 0 and inter.weights["hidden"] > 0
    pred = Distillation(
        resolve(ObjectiveConfig(method="tinybert", stage="prediction")), False, student.config, teacher.config
    )
    assert pred.weights["hidden"] == 0 and pred.student_needs == Needs()
    with pytest.raises(ConfigError, match="no active term"):
        pred.combine({}, pred.weights)


@pytest.mark.parametrize("method", ["kd", "distilbert", "tinybert", "minilm", "multilevel"])
def test_every_method_trains_end_to_end(tmp_path, glue_dir, tiny_model, method):
    teacher_dir = tmp_path / "teacher"
    base = dict(task="STS-B", glue_dir=str(glue_dir), threads=1, epochs=1, batch_size=8, max_length=32, log_every=1)
    train_tiny_teacher(glue_dir, tiny_model, teacher_dir)
    cfg = TrainConfig(
        kind="distill",
        teacher=str(teacher_dir / "model"),
        student="2x16",
        out=str(tmp_path / "s"),
        objective=ObjectiveConfig(method=method, head_average=True),
        **base,
    )
    metrics = fit(prepare(cfg), progress=False)
    assert metrics["config"]["objective"]["alpha"] is not None  # resolved weights are recorded
    exported = load_file(str(Path(cfg.out) / "model" / "model.safetensors"))
    assert not any(k.startswith("proj") for k in exported)  # objective modules stay out of the student
    from retort.report.figures import plot_run

    assert {Path(p).name for p in plot_run(cfg.out)} >= {"loss_curves.png"}  # the command plots, not the loop
    assert (Path(cfg.out) / "loss_curves.png").exists()
    records = [json.loads(x) for x in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]
    if method == "multilevel":
        assert (Path(cfg.out) / "layer_weights.png").exists()
        assert any("layer_weight/attn/1" in r for r in records)


def test_teacher_output_cache_gives_back_what_the_teacher_computed(tmp_path, glue_dir, tiny_model):
    """--cache-teacher all: the outputs kept and read back (padded to another batch's width) equal a fresh
    teacher run at every real position, and only the entries the objective reads are kept."""
    from retort.data.batching import collate

    teacher = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t", "MRPC") / "model"
    sizes = {}
    for dtype, tol in (("float32", 1e-5), ("float16", 2e-2)):
        cfg = TrainConfig(kind="distill", task="MRPC", glue_dir=str(glue_dir), teacher=str(teacher), student="2x32",
                          out=str(tmp_path / dtype), cache_teacher="all", cache_dtype=dtype, max_length=32,
                          objective=ObjectiveConfig(method="multilevel"))  # fmt: skip
        run = prepare(cfg)
        cache, obj = run.teacher_cache, run.objective
        assert cache is not None and cache.layers["attention_scores"] == [1, 3]  # teacher layers 2, 4 of 4
        assert cache.layers["hidden_states"] == sorted({t for _, t in obj.hidden_pairs})
        for idx in ([0, 5, 9], [9, 2, 7, 11]):  # example 9 in two batches of different widths
            batch = collate(run.train, idx)
            with torch.inference_mode():
                fresh = forward(run.teacher, batch, obj.teacher_needs)
            if not cache.has(idx):
                cache.put(idx, fresh)
            kept = cache.get(idx, batch["attention_mask"])
            mask = batch["attention_mask"].bool()
            pair = mask[:, None, :, None] & mask[:, None, None, :]
            assert torch.allclose(kept.logits, fresh.logits, atol=1e-6)
            for j in cache.layers["hidden_states"]:
                assert torch.allclose(kept.hidden_states[j][mask], fresh.hidden_states[j][mask], atol=tol)
            for j in cache.layers["attention_scores"]:
                k, f = kept.attention_scores[j], fresh.attention_scores[j]
                assert torch.allclose(k[pair.expand_as(k)], f[pair.expand_as(f)], atol=tol * 10)
        assert cache.has([0, 2, 5, 7, 9, 11]) and not cache.has([1]) and not cache.complete
        sizes[dtype] = cache.nbytes()
    assert sizes["float16"] < 0.6 * sizes["float32"]


def test_mobilebert_progressive_stages(tmp_path, glue_dir, tiny_model):
    """MobileBERT's progressive knowledge transfer: one student layer at a time on the hidden MSE and the
    attention KL at that layer, every other layer frozen (the embeddings train with layer 1), then the
    prediction stage."""
    teacher_dir = tmp_path / "teacher"
    train_tiny_teacher(glue_dir, tiny_model, teacher_dir)
    teacher = load_classifier(str(teacher_dir / "model"), get_task("STS-B"))
    student = build_student(teacher, StudentShape(2, 32))
    obj = Distillation(resolve(ObjectiveConfig(method="mobilebert", stage="progressive", progressive_layer=2)), True,
                     student.config, teacher.config)  # fmt: skip
    assert obj.hidden_pairs == [(2, 4)] and obj.attn_pairs == [(2, 4)]
    assert obj.weights["soft"] == 0 and obj.weights["hidden"] > 0 and obj.weights["attn"] > 0
    assert "kl on scores" in obj.formula()
    with pytest.raises(ConfigError, match="--progressive-layer 1..2"):
        Distillation(resolve(ObjectiveConfig(method="mobilebert", stage="progressive")), True, student.config,
                   teacher.config)  # fmt: skip
    base = dict(kind="distill", task="STS-B", glue_dir=str(glue_dir), teacher=str(teacher_dir / "model"),
                student="2x32", threads=1, epochs=1, batch_size=8, max_length=32)  # fmt: skip
    init, before = "teacher", None
    for layer in (1, 2):
        out = tmp_path / f"p{layer}"
        cfg = TrainConfig(out=str(out), student_init=init,
                          objective=ObjectiveConfig(method="mobilebert", stage="progressive", progressive_layer=layer),
                          **base)  # fmt: skip
        run = prepare(cfg)
        trainable = {n for n, p in run.model.named_parameters() if p.requires_grad}
        assert trainable and all(f"layer.{layer - 1}." in n or (layer == 1 and "embeddings" in n) for n in trainable)
        fit(run, progress=False)
        after = load_file(str(out / "model" / "model.safetensors"))
        if before is not None:  # layer 1 and the embeddings stayed as stage 1 left them
            frozen = [k for k in after if "layer.0." in k or "embeddings" in k]
            assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
            assert not torch.equal(after["bert.encoder.layer.1.output.dense.weight"],
                                   before["bert.encoder.layer.1.output.dense.weight"])  # fmt: skip
        before, init = after, str(out / "model")
    cfg = TrainConfig(out=str(tmp_path / "pred"), student_init=init,
                      objective=ObjectiveConfig(method="mobilebert", stage="prediction"), **base)  # fmt: skip
    assert fit(prepare(cfg), progress=False)["best"]["dev"]
