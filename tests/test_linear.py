"""The linear-attention student: fast path against the quadratic reference, masking, teacher init,
saving and loading, position extension."""

import json

import pytest
import torch

from conftest import train_tiny_teacher
from retort.data.tasks import get_task
from retort.models import linear
from retort.models.hf import load_classifier, load_tokenizer, save_model
from retort.models.init import extend_positions
from retort.models.outputs import Needs, forward
from retort.models.student import StudentShape, build_student

B, NH, T, D = 3, 2, 11, 8


def random_mask(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = (torch.rand(B, T, generator=g) > 0.35).long()  # holes anywhere, not only right padding
    m[:, 0] = 1
    return m


def features(name: str, q, k, mask=None):
    if name.startswith("hedgehog"):  # hedgehog | hedgehog-exp-separate
        g = torch.Generator().manual_seed(0)
        act = "exp" if "exp" in name else "softmax"
        fm = linear.HedgehogFeatureMap(NH, D, act, separate="separate" in name)
        with torch.no_grad():
            for w, b in [(fm.weight, fm.bias), (fm.key_weight, fm.key_bias)]:
                if w is not None:
                    w.add_(torch.randn(NH, D, D, generator=g) * 0.3)
                    b.copy_(torch.randn(NH, D, generator=g))
        return fm(q, k, mask)
    if name == "favor":
        proj = linear.orthogonal_gaussian(16, D, torch.Generator().manual_seed(0))
        return linear.favor_feature(q, proj, True), linear.favor_feature(k, proj, False, mask)
    f = linear.elu_feature if name == "elu" else linear.relu_feature
    return f(q), f(k)


@pytest.mark.parametrize("name", ["elu", "relu", "favor", "hedgehog", "hedgehog-exp-separate"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_path_matches_reference(name, seed):
    torch.manual_seed(seed)
    q, k, v = torch.randn(B, NH, T, D), torch.randn(B, NH, T, D), torch.randn(B, NH, T, D)
    mask = random_mask(seed)
    phi_q, phi_k = features(name, q, k)
    fast = linear.linear_attention(phi_q, phi_k, v, mask)
    ref = linear.linear_attention_reference(phi_q, phi_k, v, mask)
    rel = ((fast - ref).norm() / ref.norm()).item()
    assert rel < 1e-5, rel


@pytest.mark.parametrize("name", ["elu", "relu", "favor", "hedgehog", "hedgehog-exp-separate"])
def test_padded_keys_change_nothing(name):
    torch.manual_seed(3)
    q, k, v = torch.randn(B, NH, T, D), torch.randn(B, NH, T, D), torch.randn(B, NH, T, D)
    mask = random_mask(7)
    pad = (mask == 0)[:, None, :, None].expand(B, NH, T, D)
    k2 = torch.where(pad, torch.randn_like(k) * 50, k)
    v2 = torch.where(pad, torch.randn_like(v) * 50, v)
    out1 = linear.linear_attention(*features(name, q, k, mask), v, mask)
    out2 = linear.linear_attention(*features(name, q, k2, mask), v2, mask)
    assert torch.allclose(out1, out2, atol=1e-5)
    amap = linear.linear_attention_map(*features(name, q, k), mask)
    assert torch.all(amap[..., mask[0] == 0][0] == 0)


def test_float32_accumulation_for_half_inputs():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 64, D).to(torch.bfloat16) for _ in range(3))
    out = linear.linear_attention(linear.elu_feature(q), linear.elu_feature(k), v, None)
    ref = linear.linear_attention_reference(
        linear.elu_feature(q).float(), linear.elu_feature(k).float(), v.float(), None
    )
    assert out.dtype == torch.bfloat16
    assert ((out.float() - ref).norm() / ref.norm()).item() < 1e-2


def test_favor_estimates_the_softmax_kernel():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 6, 16) * 0.5, torch.randn(1, 1, 6, 16) * 0.5
    proj = linear.orthogonal_gaussian(8192, 16, torch.Generator().manual_seed(1))
    approx = linear.linear_attention_map(
        linear.favor_feature(q, proj, True), linear.favor_feature(k, proj, False), None
    )
    exact = torch.softmax(q @ k.transpose(-1, -2) / 4.0, -1)
    assert (approx - exact).abs().max().item() < 0.02


def test_extend_positions():
    w = torch.arange(12.0).view(4, 3)
    copied = extend_positions(w, 10, "copy")
    assert copied.shape == (10, 3) and torch.equal(copied[4:8], w) and torch.equal(copied[:4], w)
    inter = extend_positions(w, 7, "interpolate")
    assert torch.equal(inter[0], w[0]) and torch.equal(inter[-1], w[-1])


@pytest.mark.parametrize("fmap", ["elu", "favor", "hedgehog"])
def test_student_from_teacher_loads_weights_and_roundtrips(tiny_model, tmp_path, fmap):
    teacher = load_classifier(str(tiny_model), get_task("STS-B"))
    student = build_student(
        teacher, StudentShape(2, 32), "teacher", attention="linear", feature_map=fmap, max_positions=200
    )
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(
        s["bert.encoder.layer.0.attention.self.query.weight"], t["bert.encoder.layer.1.attention.self.query.weight"]
    )
    assert torch.equal(s["bert.encoder.layer.1.output.dense.weight"], t["bert.encoder.layer.3.output.dense.weight"])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])
    assert s["bert.embeddings.position_embeddings.weight"].shape[0] == 200
    ids = torch.randint(5, 30, (2, 150))
    ids[1, 100:] = 0
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids)}
    student.eval()
    out = forward(student, batch, Needs(hidden_states=True, attention_scores=True, values=True))
    assert out.logits.shape == (2, 1) and len(out.hidden_states) == 3
    assert out.attention_probs[0].shape == (2, 4, 150, 150)
    assert torch.allclose(out.attention_probs[0][1, :, :100].sum(-1), torch.ones(4, 100), atol=1e-4)
    save_model(student, load_tokenizer(str(tiny_model)), tmp_path / "lin")
    again = load_classifier(str(tmp_path / "lin"), get_task("STS-B"))
    assert isinstance(again, linear.LinearBertForSequenceClassification)
    assert torch.allclose(forward(again, batch).logits, out.logits, atol=1e-6)
    if fmap == "favor":  # random features are a saved buffer, frozen for evaluation
        assert torch.equal(
            again.state_dict()["bert.encoder.layer.0.attention.self.proj"],
            s["bert.encoder.layer.0.attention.self.proj"],
        )


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_loaded_student_grows_its_position_table(tiny_model, tmp_path, attention):
    """--student-init FOLDER with --max-positions past the folder's table: learned rows kept, longer
    inputs run, and the grown model saves and loads at its new length."""
    teacher = load_classifier(str(tiny_model), get_task("STS-B"))
    short = build_student(teacher, StudentShape(2, 32), "teacher", attention=attention, feature_map="hedgehog")
    save_model(short, load_tokenizer(str(tiny_model)), tmp_path / "short")
    n_old = short.config.max_position_embeddings
    grown = build_student(
        teacher, StudentShape(2, 32), str(tmp_path / "short"), attention=attention, max_positions=n_old + 40
    )
    w_old = short.state_dict()["bert.embeddings.position_embeddings.weight"]
    w_new = grown.state_dict()["bert.embeddings.position_embeddings.weight"]
    assert w_new.shape[0] == grown.config.max_position_embeddings == n_old + 40
    assert torch.equal(w_new[:n_old], w_old) and torch.equal(w_new[n_old:], w_old[:40])
    ids = torch.randint(5, 30, (2, n_old + 30))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    grown.eval()
    logits = forward(grown, batch).logits
    save_model(grown, load_tokenizer(str(tiny_model)), tmp_path / "long")
    again = load_classifier(str(tmp_path / "long"), get_task("STS-B"))
    assert torch.allclose(forward(again, batch).logits, logits, atol=1e-6)


def test_linear_student_distils_end_to_end(tmp_path, glue_dir, tiny_model):
    from retort.cli import main
    from retort.config import ObjectiveConfig, TrainConfig
    from retort.training.assembly import prepare
    from retort.training.loop import fit

    base = dict(task="STS-B", glue_dir=str(glue_dir), threads=1, epochs=1, batch_size=8, max_length=32)
    train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t")
    cfg = TrainConfig(
        kind="distill",
        teacher=str(tmp_path / "t" / "model"),
        student="2x32",
        attention="linear",
        feature_map="favor",
        max_positions=128,
        out=str(tmp_path / "lin"),
        objective=ObjectiveConfig(method="multilevel", value_weight=1.0),
        **base,
    )
    run = prepare(cfg)
    assert isinstance(run.model, linear.LinearBertForSequenceClassification)
    fit(run, progress=False)
    first = json.loads((tmp_path / "lin" / "log.jsonl").read_text().splitlines()[0])
    assert {"loss/attn", "loss/hidden", "loss/soft", "loss/value"} <= set(first)
    assert (
        main(["eval", "--task", "STS-B", "--model", str(tmp_path / "lin" / "model"), "--glue-dir", str(glue_dir)]) == 0
    )


def test_long_sts_variant(tmp_path, glue_dir, tiny_model, monkeypatch):
    from retort.config import TrainConfig
    from retort.data.long_sts import build_long
    from retort.data.tasks import load_split
    from retort.training.assembly import prepare
    from retort.training.loop import fit

    monkeypatch.setenv("RETORT_CACHE", str(tmp_path / "cache"))
    tok = load_tokenizer(str(tiny_model))
    split = load_split("STS-B", "dev", glue_dir)
    import numpy as np

    scores = np.arange(len(split.examples), dtype=np.float32)[:, None]
    data = build_long(split, scores, tok, target_tokens=60, n_examples=5)
    assert all(len(x) <= 60 for x in data.input_ids) and max(data.lengths) > 30
    assert all(0 <= y <= 5 for y in data.labels) and len(data.teacher_logits) == 5
    assert data.token_type_ids[0].count(1) > 0

    base = dict(task="STS-B", glue_dir=str(glue_dir), threads=1, epochs=1, batch_size=4, max_length=32)
    train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t")
    cfg = TrainConfig(
        kind="distill",
        teacher=str(tmp_path / "t" / "model"),
        student="2x32",
        attention="linear",
        long_sts_tokens=100,
        long_sts_train=8,
        long_sts_dev=4,
        out=str(tmp_path / "long"),
        **base,
    )
    run = prepare(cfg)
    assert run.model.config.max_position_embeddings == 100 and max(run.train.lengths) > 64
    metrics = fit(run, progress=False)
    assert metrics["train_examples"] == 8
    assert list((tmp_path / "cache" / "teacher_outputs").glob("rows-*/*.npz"))  # the teacher's scores, kept
    with pytest.raises(Exception, match="soft and hard terms only"):
        prepare(TrainConfig(**{**cfg.__dict__, "objective": cfg.objective.__class__(method="multilevel")}))
    # with --val-split the held-out long rows carry the teacher's short-pair scores: it cannot read them
    held = prepare(TrainConfig(**{**cfg.__dict__, "val_split": 8.0, "out": str(tmp_path / "long-val")}))
    assert held.dev["val"].teacher_logits is not None and max(held.dev["val"].lengths) > 64
    assert all(e["val_loss"]["loss"] >= 0 for e in fit(held, progress=False)["evals"])


def test_hedgehog_starts_at_identity_and_features_are_positive():
    fm = linear.HedgehogFeatureMap(NH, D)
    x = torch.randn(B, NH, T, D) * 5
    phi, phi_k = fm(x, x, None)
    assert torch.equal(phi, phi_k)  # shared by queries and keys
    assert phi.shape == (B, NH, T, 2 * D) and torch.all(phi > 0)
    assert torch.allclose(phi[..., :D], torch.softmax(x, -1)) and torch.allclose(
        phi.sum(-1), torch.full((B, NH, T), 2.0)
    )


@pytest.mark.parametrize("act,qk,forced", [("softmax", "shared", False), ("exp", "separate", True)])
def test_attention_stage_trains_only_hedgehog_feature_maps(tmp_path, glue_dir, tiny_model, act, qk, forced):
    """Attention transfer: the attention term alone, the feature maps the only parameters that move; the
    next run starts from it with every term on (and knows the loaded map's kind)."""
    from retort.config import ObjectiveConfig, TrainConfig
    from retort.errors import ConfigError
    from retort.training.assembly import prepare
    from retort.training.loop import fit

    base = dict(task="STS-B", glue_dir=str(glue_dir), threads=1, epochs=1, batch_size=8, max_length=32)
    train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t")
    common = dict(kind="distill", teacher=str(tmp_path / "t" / "model"), student="2x32", attention="linear", **base)
    cfg = TrainConfig(
        feature_map="hedgehog",
        hedgehog_act=act,
        hedgehog_qk=qk,
        out=str(tmp_path / "att"),
        lr=1e-2,
        objective=ObjectiveConfig(method="multilevel", stage="attention", teacher_forced=forced),
        **common,
    )
    run = prepare(cfg)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    trainable = {n for n, p in run.model.named_parameters() if p.requires_grad}
    assert trainable and all(".feature_map." in n for n in trainable)
    fit(run, progress=False)
    after = linear.LinearBertForSequenceClassification.from_pretrained(tmp_path / "att" / "model").state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(".feature_map." in k for k in moved)
    logged = json.loads((tmp_path / "att" / "log.jsonl").read_text().splitlines()[0])
    assert "loss/attn" in logged and "loss/soft" not in logged and "loss/hidden" not in logged

    nxt = prepare(
        TrainConfig(
            student_init=str(tmp_path / "att" / "model"),
            out=str(tmp_path / "all"),
            objective=ObjectiveConfig(method="multilevel"),
            **common,
        )
    )
    assert nxt.model.config.feature_map == "hedgehog" and all(p.requires_grad for p in nxt.model.parameters())
    assert (nxt.cfg.hedgehog_act, nxt.cfg.hedgehog_qk) == (act, qk)
    with pytest.raises(ConfigError, match="teacher_forced is for attention transfer"):
        prepare(
            TrainConfig(
                student_init=str(tmp_path / "att" / "model"),
                out=str(tmp_path / "y"),
                objective=ObjectiveConfig(method="multilevel", teacher_forced=True),
                **common,
            )
        )
    with pytest.raises(ConfigError, match="learned attention feature maps"):
        prepare(
            TrainConfig(
                out=str(tmp_path / "x"), objective=ObjectiveConfig(method="multilevel", stage="attention"), **common
            )
        )


def test_teacher_forcing_feeds_each_layer_its_given_input(tiny_model):
    """With layer inputs given, layer l's output depends on layer_inputs[l] only, not on the layers below."""
    teacher = load_classifier(str(tiny_model), get_task("STS-B"))
    student = build_student(teacher, StudentShape(2, 32), "teacher", attention="linear", feature_map="hedgehog")
    student.eval()
    ids = torch.randint(5, 30, (2, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    inputs = (torch.randn(2, 12, 32), torch.randn(2, 12, 32))
    needs = Needs(hidden_states=True, attention_scores=True)
    out = forward(student, batch, needs, layer_inputs=inputs)
    with torch.no_grad():
        student.bert.encoder.layer[0].attention.self.query.weight.add_(1.0)  # change the layer below
    again = forward(student, batch, needs, layer_inputs=inputs)
    assert torch.equal(out.hidden_states[2], again.hidden_states[2])
    assert torch.equal(out.attention_probs[1], again.attention_probs[1])
    assert not torch.equal(out.attention_probs[0], again.attention_probs[0])
    with pytest.raises(ValueError, match="2 layers"):
        forward(student, batch, needs, layer_inputs=inputs[:1])
