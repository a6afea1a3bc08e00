"""Width pruning as a student's start (models/prune.py): the shape asked for, exactly; nothing pruned
gives back the teacher; the importance that picks what stays is measured on real tokens only."""

from __future__ import annotations

import pytest
import torch

from retort.config import ObjectiveConfig, TrainConfig
from retort.data.tasks import get_task
from retort.errors import ConfigError
from retort.models.families import family_of
from retort.models.hf import load_classifier
from retort.models.outputs import forward
from retort.models.prune import PRUNABLE, importance, prune_student
from retort.models.student import StudentShape, build_student
from retort.training.assembly import prepare
from retort.training.loop import fit


def _batches() -> list[dict[str, torch.Tensor]]:
    ids = torch.tensor([[2, 7, 8, 9, 12, 13, 3, 14, 15, 3], [2, 10, 11, 3, 16, 3, 0, 0, 0, 0]])
    types = torch.tensor([[0] * 7 + [1] * 3, [0] * 4 + [1] * 2 + [0] * 4])
    return [{"input_ids": ids, "token_type_ids": types, "attention_mask": (ids != 0).long()}]


@pytest.fixture(scope="module")
def teacher(tiny_model):
    return load_classifier(str(tiny_model), get_task("RTE")).eval()  # 4 layers, 32 wide, 4 heads, FFN 64


def test_nothing_pruned_is_the_teacher(teacher):
    student = prune_student(teacher, StudentShape(4, 32, 4, 64), _batches()).eval()
    with torch.no_grad():
        a, b = forward(teacher, _batches()[0]).logits, forward(student, _batches()[0]).logits
    assert torch.allclose(a, b, atol=1e-6)


def test_the_shape_asked_for_exactly(teacher):
    student = build_student(teacher, StudentShape(2, 24, 4, 40), init="prune", sample_batches=_batches())
    c = student.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (2, 24, 4, 40)
    assert student.bert.encoder.layer[0].attention.self.query.weight.shape == (24, 24)
    assert student.bert.encoder.layer[1].intermediate.dense.weight.shape == (40, 24)
    assert student.bert.embeddings.word_embeddings.weight.shape[1] == 24
    assert student.retort_copied["pruned_from_teacher"]["layers"] == [2, 4]
    # fewer heads of the teacher's width: whole heads kept
    fewer = prune_student(teacher, StudentShape(2, 16, 2, 32), _batches())
    assert fewer.config.num_attention_heads == 2 and fewer.bert.encoder.layer[0].attention.self.key.weight.shape == (
        16,
        16,
    )
    out = forward(student, _batches()[0]).logits
    assert out.shape == (2, 2) and torch.isfinite(out).all()


def test_kept_parts_are_the_teachers_own_weights(teacher):
    student = prune_student(teacher, StudentShape(2, 32, 4, 48), _batches())  # only FFN neurons pruned
    t_w1 = teacher.bert.encoder.layer[1].intermediate.dense.weight  # student layer 1 <- teacher layer 2
    s_w1 = student.bert.encoder.layer[0].intermediate.dense.weight
    rows = [next(i for i in range(t_w1.shape[0]) if torch.equal(t_w1[i], row)) for row in s_w1]
    assert rows == sorted(rows) and len(set(rows)) == 48  # 48 distinct teacher neurons, in the teacher's order
    imp = importance(teacher, _batches())
    kept = imp.neurons[1][rows].min()
    dropped = [i for i in range(64) if i not in rows]
    assert kept >= imp.neurons[1][dropped].max()  # the most important ones


def test_padding_does_not_move_importance(teacher):
    short = {k: v[1:, :6] for k, v in _batches()[0].items()}  # the second row without its padding
    padded = {k: v[1:] for k, v in _batches()[0].items()}
    a, b = importance(teacher, [short]), importance(teacher, [padded])
    assert torch.allclose(a.channels, b.channels, atol=1e-5) and torch.allclose(a.neurons[0], b.neurons[0], atol=1e-5)


def test_a_student_wider_than_the_teacher_is_refused(teacher):
    with pytest.raises(ConfigError, match="is not inside the teacher"):
        prune_student(teacher, StudentShape(2, 48, 4, 64), _batches())


def test_prune_then_distill(tmp_path, glue_dir, tiny_model):
    from conftest import train_tiny_teacher

    train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t")
    cfg = TrainConfig(kind="distill", task="STS-B", glue_dir=str(glue_dir), teacher=str(tmp_path / "t" / "model"),
                      student="2x24", student_init="prune", prune_samples=16, out=str(tmp_path / "s"), threads=1,
                      epochs=1, batch_size=8, max_length=32,
                      objective=ObjectiveConfig(method="multilevel"))  # fmt: skip
    run = prepare(cfg)
    assert run.model.config.num_attention_heads == 4  # the teacher's head count: 24 divides by it
    assert run.info["copied_from_teacher"]["pruned_from_teacher"]["hidden"] == "24 of 32"
    metrics = fit(run, progress=False)
    assert metrics["copied_from_teacher"]["pruned_from_teacher"]["layers"] == [2, 4]


# --------------------------------------------------------------------------------------------
# every prunable family (tiny random classifiers of test_families' configs)


def _family_teacher(family: str) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    from test_families import tiny_config

    config = tiny_config(family, 40)
    config.num_labels = 2
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).eval()


def _bert_named(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under BERT's names (the family's ``bert_names``)."""
    import re

    from retort.models.families import family_of

    out = {}
    for key, value in model.state_dict().items():
        for pattern, repl in family_of(model.config).bert_names:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


@pytest.mark.parametrize("family", PRUNABLE)
def test_every_family_nothing_pruned_is_the_teacher(family):
    teacher = _family_teacher(family)
    whole = prune_student(teacher, StudentShape(4, 32, 4, 64), _batches()).eval()
    with torch.no_grad():
        a, b = forward(teacher, _batches()[0]).logits, forward(whole, _batches()[0]).logits
    assert torch.allclose(a, b, atol=1e-5), (family, (a - b).abs().max())


@pytest.mark.parametrize("family", [f for f in PRUNABLE if f != "modernbert"])  # its own names: the test below
def test_every_family_prunes_to_the_shape_in_the_teachers_order(family):
    teacher = _family_teacher(family)
    student = prune_student(teacher, StudentShape(2, 24, 4, 40), _batches()).eval()
    c, fam = student.config, family_of(student.config)
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, getattr(c, fam.intermediate)) == (2, 24, 4, 40)
    t, s = _bert_named(teacher), _bert_named(student)
    assert s["bert.encoder.layer.0.attention.self.query.weight"].shape == (24, 24)
    assert s["bert.encoder.layer.1.intermediate.dense.weight"].shape == (40, 24)
    # kept channels and FFN neurons are the teacher's own (student layer 1 <- teacher layer 4), in its order
    emb_t, emb_s = t["bert.embeddings.word_embeddings.weight"], s["bert.embeddings.word_embeddings.weight"]
    cols = [next(j for j in range(32) if torch.equal(emb_t[:, j], col)) for col in emb_s.T]
    w1_t, w1_s = (
        t["bert.encoder.layer.3.intermediate.dense.weight"],
        s["bert.encoder.layer.1.intermediate.dense.weight"],
    )
    rows = [next(i for i in range(64) if torch.equal(w1_t[i, cols], row)) for row in w1_s]
    assert cols == sorted(cols) and len(set(cols)) == 24 and rows == sorted(rows) and len(set(rows)) == 40
    with torch.no_grad():
        out = forward(student, _batches()[0]).logits
    assert out.shape == (2, 2) and torch.isfinite(out).all()


def test_mpnet_keeps_one_head_set_for_its_shared_bias_table():
    teacher = _family_teacher("mpnet")
    student = prune_student(teacher, StudentShape(2, 16, 2, 32), _batches())  # 2 of 4 heads, their full width
    kept = student.retort_copied["pruned_from_teacher"]["heads"]
    assert "in every layer" in kept
    heads = eval(kept[kept.index("[") : kept.index("]") + 1])  # noqa: S307  (a list literal we wrote)
    table_t = teacher.mpnet.encoder.relative_attention_bias.weight
    assert torch.equal(student.mpnet.encoder.relative_attention_bias.weight, table_t[:, heads])
    for s_layer, t_layer in zip(student.mpnet.encoder.layer, [teacher.mpnet.encoder.layer[i] for i in (1, 3)]):
        q_t = t_layer.attention.attn.q.weight.view(4, 8, 32)  # (heads, head width, hidden)
        q_s = s_layer.attention.attn.q.weight.view(2, 8, 16)
        for j, h in enumerate(heads):  # each student head is that teacher head (its kept channels)
            assert any(torch.equal(q_s[j, :, 0], q_t[h, :, c]) for c in range(32))


def test_modernbert_prunes_whole_rotary_heads_only():
    teacher = _family_teacher("modernbert")  # 4 heads of 8
    with pytest.raises(ConfigError, match="rotary .* keep whole heads of 8 \\(--student-heads 3 for width 24\\)"):
        prune_student(teacher, StudentShape(2, 24, 4, 40), _batches())
    student = prune_student(teacher, StudentShape(2, 24, 3, 40), _batches()).eval()
    assert student.model.layers[0].attn.Wqkv.weight.shape == (72, 24) and student.model.layers[
        1
    ].mlp.Wi.weight.shape == (
        80,
        24,
    )
    assert student.config.layer_types == [teacher.config.layer_types[i] for i in (1, 3)]
    emb_t, emb_s = teacher.model.embeddings.tok_embeddings.weight, student.model.embeddings.tok_embeddings.weight
    cols = [next(j for j in range(32) if torch.equal(emb_t[:, j], col)) for col in emb_s.T]
    wo_t, wo_s = teacher.model.layers[3].mlp.Wo.weight[cols], student.model.layers[1].mlp.Wo.weight  # (H, I)
    neurons = [next(i for i in range(64) if torch.equal(wo_t[:, i], col)) for col in wo_s.T]
    assert cols == sorted(cols) and neurons == sorted(neurons) and len(set(neurons)) == 40
    gate_t = teacher.model.layers[3].mlp.Wi.weight[64:][neurons][:, cols]  # each neuron keeps its own gate row
    assert torch.equal(student.model.layers[1].mlp.Wi.weight[40:], gate_t)
    with torch.no_grad():
        assert torch.isfinite(forward(student, _batches()[0]).logits).all()
