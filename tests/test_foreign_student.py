"""A distilled student started from another model that reads its own tokens (``--student-init FOLDER`` of
another vocabulary or family): it learns the teacher's logits, computed once on the teacher's tokens."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer, DistilBertConfig, DistilBertModel

from conftest import WORDS, train_tiny_teacher
from retort.cli import main
from retort.config import ObjectiveConfig, TrainConfig
from retort.data.batching import encode
from retort.data.tasks import carve, get_task, load_split
from retort.errors import ConfigError
from retort.evaluation.evaluator import eval_batches
from retort.models.hf import load_classifier, load_tokenizer
from retort.models.inference import predict
from retort.training.assembly import prepare
from retort.training.loop import fit


@pytest.fixture(scope="module")
def teacher(glue_dir, tiny_model, tmp_path_factory) -> Path:
    return train_tiny_teacher(glue_dir, tiny_model, tmp_path_factory.mktemp("foreign-teacher") / "run") / "model"


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> Path:
    """A 3x24 BERT encoder whose vocabulary is the test words in reverse order, with extra word pieces: the same
    text becomes other token ids."""
    root = tmp_path_factory.mktemp("other-vocab")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS), reverse=True), ".", "##s", "##ed"]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab=str(root / "vocab.txt"), do_lower_case=True).save_pretrained(root)
    torch.manual_seed(1)
    config = BertConfig(vocab_size=len(vocab), hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(root, safe_serialization=True)
    return root


@pytest.fixture(scope="module")
def distil(other, tmp_path_factory) -> Path:
    """A 3x24 DistilBERT with the other vocabulary: its config names its sizes n_layers and dim."""
    root = tmp_path_factory.mktemp("other-distilbert")
    BertTokenizer(vocab=str(other / "vocab.txt"), do_lower_case=True).save_pretrained(root)
    vocab = len((other / "vocab.txt").read_text().split())
    config = DistilBertConfig(vocab_size=vocab, dim=24, n_layers=3, n_heads=4, hidden_dim=48,
                              max_position_embeddings=64)  # fmt: skip
    DistilBertModel(config).save_pretrained(root, safe_serialization=True)
    return root


def _cfg(teacher: Path, other: Path, glue_dir: Path, out: Path, **kw) -> TrainConfig:
    base = dict(kind="distill", task="STS-B", glue_dir=str(glue_dir), teacher=str(teacher), student_init=str(other),
                student="2x24", objective=ObjectiveConfig(method="kd"), epochs=1, batch_size=8, max_length=32,
                threads=1, val_split=0.25, out=str(out))  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_the_student_reads_its_own_tokens_and_learns_the_teachers_logits(teacher, other, glue_dir, tmp_path):
    setup = prepare(_cfg(teacher, other, glue_dir, tmp_path / "run"))
    assert setup.tokenizer.get_vocab() == load_tokenizer(str(other)).get_vocab()
    assert setup.model.config.vocab_size == len(load_tokenizer(str(other)).get_vocab())
    assert setup.model.config.num_hidden_layers == 2 and setup.teacher_cache is None
    assert setup.info["copied_from_teacher"]["from"] == str(other)
    assert setup.info["copied_from_teacher"]["own"] == 2  # the new head: classifier weight and bias
    assert setup.info["copied_from_teacher"]["pruned_from_teacher"]["layers"] == [2, 3]  # of the other model's
    assert "own" in setup.info["student_tokenizer"]
    # the rows the student trains on carry the teacher's logits on the teacher's own tokens
    task = get_task("STS-B")
    split, _, _ = carve(load_split(task, "train", str(glue_dir)), 0.25, 42)
    t_tok = load_tokenizer(str(teacher))
    data = encode(split, t_tok, 32)
    model = load_classifier(str(teacher), task)
    want = predict(model, eval_batches(data, 16, t_tok.pad_token_id or 0), len(data), "cpu")
    np.testing.assert_allclose(np.array(setup.train.teacher_logits), want, atol=1e-5)
    assert setup.train.input_ids[0] != data.input_ids[0]  # other ids for the same text
    assert len(setup.dev["val"].teacher_logits) == len(setup.dev["val"])  # the held-out rows' loss reads them too
    metrics = fit(setup, progress=False)
    assert np.isfinite(metrics["best"]["val"]["pearson"])
    saved = tmp_path / "run" / "model"
    assert load_tokenizer(str(saved)).get_vocab() == load_tokenizer(str(other)).get_vocab()
    assert json.loads((saved / "config.json").read_text())["retort_task"] == "STS-B"
    assert "own" in metrics["student_tokenizer"]
    logged = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [np.isfinite(r["val_loss"]["loss"]) for r in logged if r.get("val_loss")] == [True]


def test_layer_terms_and_shapes_outside_the_start_are_refused_before_the_data(teacher, other, glue_dir, tmp_path):
    with pytest.raises(
        ConfigError, match=r"its own tokenizer .* logits only and --method multilevel compares layers .*--method kd"
    ):
        prepare(_cfg(teacher, other, glue_dir, tmp_path / "a", objective=ObjectiveConfig(method="multilevel")))
    with pytest.raises(ConfigError, match=r"--student 4x24: larger than --student-init"):
        prepare(_cfg(teacher, other, glue_dir, tmp_path / "b", student="4x24"))


def test_the_command_line_refuses_in_one_line(teacher, other, glue_dir, tmp_path, capsys):
    args = ["distill", "--task", "STS-B", "--glue-dir", str(glue_dir), "--teacher", str(teacher), "--student-init",
            str(other), "--student", "2x24", "--method", "tinybert", "--out", str(tmp_path / "c")]  # fmt: skip
    assert main(args) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and "--method kd" in err[0] and not (tmp_path / "c").exists()


def test_a_student_of_another_family_prunes_from_it(teacher, distil, glue_dir, tmp_path):
    setup = prepare(_cfg(teacher, distil, glue_dir, tmp_path / "run", student="2x16"))
    assert type(setup.model).__name__ == "DistilBertForSequenceClassification"
    assert setup.info["copied_from_teacher"]["pruned_from_teacher"]["hidden"] == "16 of 24"
    assert np.isfinite(fit(setup, progress=False)["best"]["val"]["pearson"])


def test_a_start_of_the_students_own_shape_is_taken_whole(teacher, other, glue_dir, tmp_path):
    copied = prepare(_cfg(teacher, other, glue_dir, tmp_path / "run", student="3x24")).info["copied_from_teacher"]
    assert "pruned_from_teacher" not in copied and copied["own"] == 2 and copied["copied"] > 0


def test_teacher_logits_are_kept_by_row_so_a_grown_split_runs_the_teacher_on_new_rows_only(
    teacher, glue_dir, tmp_path, monkeypatch
):
    import retort.distill.teacher_cache as tc
    from retort.data.glue import Split

    monkeypatch.setenv("RETORT_CACHE", str(tmp_path / "cache"))
    task, tok = get_task("STS-B"), load_tokenizer(str(teacher))
    rows = load_split(task, "train", glue_dir).examples
    seen: list[int] = []
    real = tc.predict

    def counted(model, batches, n, device):
        seen.append(n)
        return real(model, batches, n, device)

    monkeypatch.setattr(tc, "predict", counted)
    first = tc.teacher_logits(str(teacher), Split(task, "train", rows[:20], "test"), tok, 64)
    grown = tc.teacher_logits(str(teacher), Split(task, "train", rows[10:30][::-1], "test"), tok, 64)
    assert seen == [20, 10]  # the second split shares 10 rows with the first: only the other 10 ran
    np.testing.assert_array_equal(grown[::-1][:10], first[10:])  # the kept rows, found in another order
    want = predict(load_classifier(str(teacher), task), eval_batches(encode(Split(task, "x", rows[:30], "t"), tok, 64),
                   8, tok.pad_token_id), 30, "cpu")  # fmt: skip
    np.testing.assert_allclose(grown[::-1], want[10:30], atol=1e-5)
    store = next((tmp_path / "cache" / "teacher_outputs").glob("rows-*"))
    assert len(list(store.glob("*.npz"))) == 2 and not list(store.glob("*.tmp"))
    from retort.cachedir import entries

    assert [e.holds for e in entries(tmp_path / "cache")] == [f"logits by row (float32), 30 rows, {teacher}"]
    (store / "0-damaged.npz").write_bytes(b"PK\x03\x04 cut short")  # a shard a crash cut short is skipped
    assert (
        tc.RowLogits(str(teacher), 1).lookup(tc.row_hashes(encode(Split(task, "t", rows[:30], "t"), tok, 64)))[1] == []
    )
    # an entry of the whole split, as retort kept them before the row store, is read and its rows join the store
    legacy = Split(task, "train", rows[30:40], "test")
    data = encode(legacy, tok, 64)
    root = tmp_path / "cache" / "teacher_outputs" / tc.outputs_key(str(teacher), data, "logits", {}, "float32")
    old = tc.TeacherOutputCache(
        root, data, "logits", {}, {"heads": 0, "width": 0, "layers": 0, "classes": 1}, "float32"
    )
    old.arrays["logits"][:] = 7.0
    old.filled[:] = 1
    old.flush()
    assert (tc.teacher_logits(str(teacher), legacy, tok, 64) == 7.0).all() and seen == [20, 10]
    assert (tc.RowLogits(str(teacher), 1).lookup(tc.row_hashes(data))[0] == 7.0).all()


def test_a_teacher_pass_stopped_halfway_keeps_the_shards_it_finished(teacher, glue_dir, tmp_path, monkeypatch):
    import retort.distill.teacher_cache as tc
    from retort.data.glue import Split

    monkeypatch.setenv("RETORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tc, "SHARD_ROWS", 8)  # two batches of 4 a shard
    task, tok = get_task("STS-B"), load_tokenizer(str(teacher))
    split = Split(task, "train", load_split(task, "train", glue_dir).examples[:20], "test")
    real, calls = tc.predict, []

    def stops(model, batches, n, device):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, batches, n, device)

    monkeypatch.setattr(tc, "predict", stops)
    with pytest.raises(KeyboardInterrupt):
        tc.teacher_logits(str(teacher), split, tok, 64, batch_size=4)
    assert len(tc.RowLogits(str(teacher), 1).lookup(tc.row_hashes(encode(split, tok, 64)))[1]) == 12  # 8 kept
    monkeypatch.setattr(tc, "predict", real)
    again = tc.teacher_logits(str(teacher), split, tok, 64, batch_size=4)
    want = predict(load_classifier(str(teacher), task), eval_batches(encode(split, tok, 64), 8, tok.pad_token_id), 20,
                   "cpu")  # fmt: skip
    np.testing.assert_allclose(again, want, atol=1e-5)
