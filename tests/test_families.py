"""Every model family in ``retort.models.families``, on a tiny random config made here (vocabulary of
the test WordPiece tokenizer, hidden 32, 4 layers, offline): teacher fine-tuning, every method preset
with every term on, the linear student, the DSE bi-encoder, save and load through the Auto classes, and
(for the families whose Q K^T is not the real score) an attention target that is the model's own."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, BertTokenizer, BertTokenizerFast

from conftest import WORDS
from retort.config import ObjectiveConfig, TrainConfig
from retort.data.batching import collate
from retort.data.tasks import get_task
from retort.errors import ConfigError
from retort.models.families import FAMILIES, family_of
from retort.models.hf import load_classifier, save_model
from retort.models.outputs import Needs, forward
from retort.models.prune import PRUNABLE
from retort.models.student import StudentShape, build_student
from retort.training.assembly import prepare
from retort.training.loop import fit

HF_FAMILIES = [name for name, f in FAMILIES.items() if f.kernel == "softmax"]
METHODS = ["kd", "distilbert", "tinybert", "minilm", "multilevel"]


def tiny_config(family: str, vocab: int):
    """A tiny random config of ``family``: hidden 32, 4 layers of 4 heads, FFN 64; pad id 0 (the test
    tokenizer's), CLS 2, SEP 3."""
    import transformers as T

    common = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=66, pad_token_id=0)  # fmt: skip
    return {
        "bert": lambda: T.BertConfig(**common),
        "roberta": lambda: T.RobertaConfig(**common, bos_token_id=2, eos_token_id=3),
        "xlm-roberta": lambda: T.XLMRobertaConfig(**common, bos_token_id=2, eos_token_id=3),
        "electra": lambda: T.ElectraConfig(**common, embedding_size=32),
        "distilbert": lambda: T.DistilBertConfig(
            vocab_size=vocab, dim=32, n_layers=4, n_heads=4, hidden_dim=64, max_position_embeddings=64, pad_token_id=0
        ),  # fmt: skip
        "mpnet": lambda: T.MPNetConfig(**common, bos_token_id=2, eos_token_id=3),
        "deberta-v2": lambda: T.DebertaV2Config(  # v3's layout: relative attention only, no token types
            **common,
            type_vocab_size=0,
            relative_attention=True,
            position_biased_input=False,
            pos_att_type=["p2c", "c2p"],
            position_buckets=8,
            max_relative_positions=-1,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
        ),  # fmt: skip
        "modernbert": lambda: T.ModernBertConfig(
            **{k: v for k, v in common.items() if k != "max_position_embeddings"},
            max_position_embeddings=64,
            global_attn_every_n_layers=2,
            local_attention=8,
            cls_token_id=2,
            sep_token_id=3,
            bos_token_id=2,
            eos_token_id=3,
        ),  # fmt: skip
    }[family]()


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    """A base model folder (encoder, no task head, like a real checkpoint) and tokenizer per family."""
    root = tmp_path_factory.mktemp("families")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *sorted(set(WORDS))]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    out = {}
    for name in HF_FAMILIES:
        folder = root / name
        BertTokenizer(vocab=str(root / "vocab.txt"), do_lower_case=True).save_pretrained(folder)  # vocab=: see conftest
        torch.manual_seed(0)
        AutoModel.from_config(tiny_config(name, len(vocab))).save_pretrained(folder, safe_serialization=True)
        out[name] = folder
    return out


@pytest.fixture(scope="module")
def teachers(bases, glue_dir, tmp_path_factory) -> dict[str, Path]:
    """Each family fine-tuned on RTE for one epoch (6 steps): the teachers of the tests below."""
    root = tmp_path_factory.mktemp("family-teachers")
    out = {}
    for name, base in bases.items():
        cfg = TrainConfig(kind="teacher", base=str(base), out=str(root / name), **_common(glue_dir))
        fit(prepare(cfg), progress=False)
        out[name] = root / name / "model"
    return out


def _common(glue_dir: Path) -> dict:
    return dict(task="RTE", glue_dir=str(glue_dir), threads=1, epochs=1, batch_size=8, max_length=32, log_every=1,
                max_train_samples=16, max_eval_samples=8, lr=1e-4)  # fmt: skip


def _first_terms(run_dir: Path) -> dict[str, float]:
    records = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return next(r for r in records if "loss" in r)


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_teacher_and_every_method_preset(family, teachers, glue_dir, tmp_path):
    assert (teachers[family] / "model.safetensors").is_file()
    for method in METHODS:
        cfg = TrainConfig(
            kind="distill", teacher=str(teachers[family]), student="2x32", out=str(tmp_path / method),
            objective=ObjectiveConfig(method=method), **_common(glue_dir),
        )  # fmt: skip
        run = prepare(cfg)
        assert family_of(run.model.config).name == family  # a softmax student of the teacher's own family
        assert run.info["copied_from_teacher"]["copied"] > 0
        active = [k for k, w in run.objective.weights.items() if w and k != "hard"] if method != "kd" else ["soft"]
        metrics = fit(run, progress=False)
        if method == "tinybert":  # the run records what its attention term compared
            kind = "probabilities" if FAMILIES[family].attention == "probs" else "scores"
            assert f"mse on {kind}" in metrics["objective"] and metrics["families"]["teacher"] == family
        logged = _first_terms(tmp_path / method)
        for term in active:
            value = logged[f"loss/{term}"]
            # logged and finite; a KL between maps the student copied from the teacher can be 0 up to rounding
            # (-7e-10 for modernbert's minilm attention term on an AVX2-only CPU), so the check that each term
            # measures something is _each_term_reaches_the_student's, on a student moved off the teacher
            assert math.isfinite(value) and value > -1e-6, (family, method, term, value)
        _each_term_reaches_the_student(run, active, (family, method))


def _each_term_reaches_the_student(run, active: list[str], label) -> None:
    """Every active term, on a student moved off the teacher's weights, sends a non-zero gradient into the
    student's own parameters (not only into the objective's projections): the term is wired to the student.
    Its value is not required to be large: a tiny random teacher's logits can be near-uniform, and a soft
    KL then stays near 0 however the student moves."""
    torch.manual_seed(0)
    model = run.model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = collate(run.train, list(range(8)), run.tokenizer.pad_token_id or 0)
    with torch.inference_mode():
        t_out = forward(run.teacher, batch, run.objective.teacher_needs).detached()
    s_out = forward(model, batch, run.objective.student_needs, run.objective.layer_inputs(t_out))
    loss = run.objective(s_out, t_out, batch)
    params = [p for p in model.parameters() if p.requires_grad]
    for term in active:
        value = loss.terms[term]
        assert value.requires_grad, (*label, term, "does not depend on the student")
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        norm = sum(float(g.norm()) for g in grads if g is not None)
        assert math.isfinite(norm) and norm > 0, (*label, term, float(value), "no gradient reaches the student")


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_linear_student(family, teachers, glue_dir, tmp_path):
    base = dict(kind="distill", teacher=str(teachers[family]), student="2x32", attention="linear",
                objective=ObjectiveConfig(method="multilevel"), **_common(glue_dir))  # fmt: skip
    init = "teacher"
    if not family_of(load_classifier(str(teachers[family]), get_task("RTE")).config).bert_names:
        with pytest.raises(ConfigError, match="cannot initialise the BERT-shaped linear"):
            prepare(TrainConfig(out=str(tmp_path / "refused"), **base))
        init = "random"  # ModernBERT's layers are not BERT-shaped: a random linear student still trains
    run = prepare(TrainConfig(out=str(tmp_path / "lin"), student_init=init, **base))
    assert family_of(run.model.config).kernel == "linear"
    fit(run, progress=False)
    logged = _first_terms(tmp_path / "lin")
    assert all(math.isfinite(logged[f"loss/{t}"]) and logged[f"loss/{t}"] > 0 for t in ("soft", "hidden", "attn"))
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "lin" / "model")
    assert family_of(again.config).kernel == "linear"


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_dse_biencoder(family, teachers, glue_dir, tmp_path):
    cfg = TrainConfig(kind="distill", dse=True, teacher=str(teachers[family]), student="2x32", out=str(tmp_path / "d"),
                      **_common(glue_dir))  # fmt: skip
    metrics = fit(prepare(cfg), progress=False)
    assert (tmp_path / "d" / "model" / "retort_dse.json").is_file() and metrics
    loaded = load_classifier(str(tmp_path / "d" / "model"), get_task("RTE"))
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 10, 11, 3, 0]])
    emb = loaded.embed(ids, (ids != 0).long())
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[2, 7, 8, 9, 12, 13, 3, 14, 15, 3], [2, 10, 11, 3, 16, 3, 0, 0, 0, 0]])
    types = torch.tensor([[0] * 7 + [1] * 3, [0] * 4 + [1] * 2 + [0] * 4])
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": (ids != 0).long()}


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_save_then_load_gives_the_same_logits(family, teachers, tmp_path):
    teacher = load_classifier(str(teachers[family]), get_task("RTE")).eval()
    students = {"teacher": teacher, "softmax": build_student(teacher, StudentShape(2, 32)).eval()}
    linear_init = "teacher" if family_of(teacher.config).bert_names else "random"
    students["linear"] = build_student(teacher, StudentShape(2, 32), init=linear_init, attention="linear").eval()
    tokenizer = BertTokenizerFast.from_pretrained(teachers[family])
    for kind, model in students.items():
        with torch.no_grad():
            before = forward(model, _batch()).logits
        save_model(model, tokenizer, tmp_path / kind)
        again = AutoModelForSequenceClassification.from_pretrained(tmp_path / kind).eval()
        with torch.no_grad():
            after = forward(again, _batch()).logits
        assert torch.allclose(before, after, atol=1e-5), (family, kind, (before - after).abs().max())


def _keep(seen: dict, key: str, value: torch.Tensor) -> None:
    """Keep a module's first output (DeBERTa runs its key projection on the relative embeddings too)."""
    seen.setdefault(key, value)


@pytest.mark.parametrize("family", [n for n in HF_FAMILIES if FAMILIES[n].attention == "probs"])
def test_attention_target_is_the_models_own(family, teachers):
    """For DeBERTa, MPNet and ModernBERT the target is the distribution the model mixes its values with:
    probs @ V reproduces the input of the attention's output projection (to 1e-5), and it is not the
    softmax of Q K^T / sqrt(d)."""
    model = load_classifier(str(teachers[family]), get_task("RTE")).eval()
    fam = family_of(model.config)
    out_proj = {"mpnet": "attention.attn.o", "deberta-v2": "attention.output.dense", "modernbert": "attn.Wo"}[family]
    seen: dict[str, torch.Tensor] = {}
    layer = fam.layer_list(model)[1]
    hooks = [
        layer.get_submodule(out_proj).register_forward_pre_hook(lambda _m, args: seen.__setitem__("ctx", args[0])),
        layer.get_submodule(fam.qkv or fam.value).register_forward_hook(lambda _m, _i, o: _keep(seen, "v", o)),
    ]
    if fam.query:
        for kind in ("query", "key"):
            path = getattr(fam, kind)
            hooks.append(layer.get_submodule(path).register_forward_hook(lambda _m, _i, o, k=kind: _keep(seen, k, o)))
    with torch.no_grad():
        target = forward(model, _batch(), Needs(attention_scores=True)).attention_probs[1]  # (B, nh, T, T)
    for h in hooks:
        h.remove()
    assert target is not None
    b, t, width = seen["ctx"].shape
    heads = model.config.num_attention_heads
    v = seen["v"].chunk(3, dim=-1)[2] if fam.qkv else seen["v"]
    v = v.reshape(b, t, heads, width // heads).transpose(1, 2)
    mixed = (target @ v).transpose(1, 2).reshape(b, t, width)
    real = _batch()["attention_mask"].bool()
    assert torch.allclose(mixed[real], seen["ctx"][real], atol=1e-5)
    if fam.query:  # and Q K^T / sqrt(d) alone would be another distribution
        q = seen["query"].reshape(b, t, heads, -1).transpose(1, 2)
        k = seen["key"].reshape(b, t, heads, -1).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~real[:, None, None, :], -1e9)
        pairs = (real[:, None, :, None] & real[:, None, None, :]).expand_as(target)
        assert (scores.softmax(-1) - target)[pairs].abs().max() > 1e-3


def test_unknown_family_is_a_clear_error():
    class Config:
        model_type = "gpt2"

    with pytest.raises(ConfigError, match=r"model family 'gpt2' is not supported; supported: bert, deberta-v2"):
        family_of(Config())


def test_students_of_another_family_are_refused(teachers):
    bert = load_classifier(str(teachers["bert"]), get_task("RTE"))
    roberta = load_classifier(str(teachers["roberta"]), get_task("RTE"))
    from retort.models.init import copy_teacher_weights

    student = build_student(roberta, StudentShape(2, 32), init="random")
    with pytest.raises(ConfigError, match="the student is a roberta and the teacher a bert"):
        copy_teacher_weights(bert, student)


def test_a_student_folder_of_another_family_or_vocabulary_is_refused(teachers, tmp_path):
    bert = load_classifier(str(teachers["bert"]), get_task("RTE"))
    roberta = load_classifier(str(teachers["roberta"]), get_task("RTE"))
    tokenizer = BertTokenizerFast.from_pretrained(teachers["bert"])
    save_model(build_student(roberta, StudentShape(2, 32)), tokenizer, tmp_path / "roberta-student")
    with pytest.raises(ConfigError, match="is a roberta model and the teacher a bert: teacher and student share"):
        build_student(bert, StudentShape(2, 32), init=str(tmp_path / "roberta-student"))
    other = build_student(bert, StudentShape(2, 32))
    other.resize_token_embeddings(bert.config.vocab_size + 8)
    save_model(other, tokenizer, tmp_path / "other-vocab")
    with pytest.raises(ConfigError, match="vocabulary of .* tokens and the teacher"):
        build_student(bert, StudentShape(2, 32), init=str(tmp_path / "other-vocab"))


def test_no_linear_special_case_outside_its_file():
    """The linear student is a transformers model: nothing asks "is this the linear one?" by its class or
    its folder outside models/linear.py (families.py says what differs, as data)."""
    src = Path(__file__).resolve().parents[1] / "src" / "retort"
    for path in src.rglob("*.py"):
        if path.name == "linear.py":
            continue
        text = path.read_text()
        assert "is_linear_folder" not in text, path
        assert "isinstance(model, linear" not in text and "isinstance(model.encoder, linear" not in text, path
        assert "LinearBertForSequenceClassification)" not in text, path


@pytest.mark.parametrize("family", [f for f in HF_FAMILIES if f in PRUNABLE])
def test_a_pruned_student_takes_a_general_then_a_task_stage(family, teachers, glue_dir, tmp_path):
    """Every prunable family: a pruned start, TinyBERT's general stage on corpus text (the teacher's own attention
    targets, as its adaptor gives them), then the task stage from that model."""
    import random

    from conftest import sentence

    rng = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(" ".join(sentence(rng) for _ in range(4)) for _ in range(12)) + "\n")
    common = {**_common(glue_dir), "teacher": str(teachers[family]), "student": "2x24",
              "objective": ObjectiveConfig(method="multilevel")}  # fmt: skip
    general = TrainConfig(kind="distill", general=True, corpus=str(corpus), corpus_sequences=16, heldout_sequences=4,
                          student_init="prune", student_heads=3 if FAMILIES[family].rotary else 4,  # rotary: heads of 8
                          out=str(tmp_path / "g"), **common)  # fmt: skip
    run = prepare(general)
    assert run.info["copied_from_teacher"]["pruned_from_teacher"]["hidden"] == "24 of 32"
    fit(run, progress=False)
    task = TrainConfig(kind="distill", student_init=str(tmp_path / "g" / "model"), out=str(tmp_path / "t"), **common)
    metrics = fit(prepare(task), progress=False)
    assert metrics["families"]["student"] == family and math.isfinite(metrics["best"]["dev"]["accuracy"])


NO_TOKEN_TYPES = ("distilbert", "mpnet", "deberta-v2", "modernbert")  # (this DeBERTa-v3 config: type_vocab_size 0)


@pytest.mark.parametrize("family", HF_FAMILIES)
def test_every_family_exports_to_onnx(family, teachers, glue_dir, tmp_path):
    """Each family's teacher exports and its graph gives PyTorch's logits; the record lists the inputs the graph
    reads: the tracer drops token types where the model never reads them (before, those four families' exports
    failed on the check against PyTorch, which fed every input)."""
    from retort.cli import main

    out = tmp_path / "export"
    assert main(["export", "--model", str(teachers[family]), "--out", str(out), "--glue-dir", str(glue_dir),
                 "--task", "RTE", "--no-eval", "--threads", "1"]) == 0  # fmt: skip
    record = json.loads((out / "retort_export.json").read_text())
    assert record["inputs"][:2] == ["input_ids", "attention_mask"]
    assert ("token_type_ids" in record["inputs"]) == (family not in NO_TOKEN_TYPES), record["inputs"]
    diff = record["max_abs_diff_fp32_vs_torch"]
    assert max(d for d in diff.values() if d is not None) < 1e-4, (family, diff)
