"""Transfer sets: unlabelled inputs the teacher labels (data/transfer.py), the masked hard loss, and a
distillation run that trains on them."""

from __future__ import annotations

import pytest
import torch

from conftest import train_tiny_teacher
from retort.data.batching import Encoded, collate
from retort.data.tasks import get_task, load_split
from retort.data.transfer import load_transfer, parse_spec, with_transfer
from retort.distill import losses
from retort.errors import ConfigError, DataError


def test_parse_spec():
    assert parse_spec("MNLI:200") == ("MNLI", 200)
    assert parse_spec("texts.tsv") == ("texts.tsv", None)
    assert parse_spec("C:/x/texts.tsv") == ("C:/x/texts.tsv", None)
    with pytest.raises(ConfigError, match="positive"):
        parse_spec("MNLI:0")


def test_glue_task_and_file_sources(glue_dir, tmp_path):
    sts = get_task("STS-B")
    mrpc = load_transfer(sts, "MRPC:10", glue_dir)
    assert len(mrpc) == 10 and all(ex.label is None and len(ex.texts) == 2 for ex in mrpc.examples)
    assert mrpc.examples[0].texts == load_split("MRPC", "train", glue_dir).examples[0].texts
    with pytest.raises(ConfigError, match="reads sentence pairs, SST-2 does not"):
        load_transfer(sts, "SST-2", glue_dir)
    f = tmp_path / "pairs.tsv"
    f.write_text("a man plays\ta man is playing\nsome text\tmore text\nthird\tpair\n", encoding="utf-8")
    pairs = load_transfer(sts, f"{f}:2", glue_dir)
    assert [ex.texts for ex in pairs.examples] == [("a man plays", "a man is playing"), ("some text", "more text")]
    with pytest.raises(DataError, match=r"pairs.tsv:1: expected one text"):
        load_transfer(get_task("CoLA"), str(f), glue_dir)
    with pytest.raises(DataError, match="neither a GLUE task nor a file"):
        load_transfer(sts, "no-such-thing", glue_dir)
    train = load_split(sts, "train", glue_dir)
    both, added, _ = with_transfer(train, ["MRPC:5", f"{f}"], glue_dir)
    assert added == 8 and len(both) == len(train) + 8 and both.examples[: len(train)] == train.examples


def test_collate_masks_missing_labels_and_hard_loss_skips_them():
    data = Encoded([[1, 2], [3], [4, 5, 6]], [[0, 0], [0], [0, 0, 0]], [1, None, 0], regression=False)
    batch = collate(data, [0, 1, 2])
    assert batch["labels"].tolist() == [1, 0, 0] and batch["label_mask"].tolist() == [True, False, True]
    assert "labels" not in collate(data, [1]) and "label_mask" not in collate(data, [0, 2])
    logits = torch.randn(3, 2)
    masked = losses.hard_loss(logits, batch["labels"], False, batch["label_mask"])
    kept = losses.hard_loss(logits[[0, 2]], batch["labels"][[0, 2]], False)
    assert torch.allclose(masked, kept)
    scores = torch.tensor([[1.0], [9.0], [2.0]])
    gold = torch.tensor([0.0, 0.0, 4.0])
    assert losses.hard_loss(scores, gold, True, torch.tensor([True, False, True])).item() == pytest.approx(2.5)


def test_distill_with_a_transfer_set(tmp_path, glue_dir, tiny_model):
    from retort.config import ObjectiveConfig, TrainConfig
    from retort.training.assembly import prepare
    from retort.training.loop import fit

    train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t")
    cfg = TrainConfig(
        task="STS-B",
        glue_dir=str(glue_dir),
        kind="distill",
        teacher=str(tmp_path / "t" / "model"),
        student="2x32",
        out=str(tmp_path / "s"),
        epochs=1,
        batch_size=8,
        threads=1,
        transfer=["MRPC:20", "RTE:12"],
        objective=ObjectiveConfig(method="multilevel"),
    )
    run = prepare(cfg)
    n_train = len(load_split("STS-B", "train", glue_dir))
    assert run.info["train_examples"] == n_train + 32 and run.info["transfer_examples"] == 32
    metrics = fit(run, progress=False)
    assert metrics["transfer_examples"] == 32 and metrics["steps"] == -(-(n_train + 32) // 8)
    with pytest.raises(ConfigError, match="retort distill only"):
        prepare(TrainConfig(task="STS-B", glue_dir=str(glue_dir), out=str(tmp_path / "x"), transfer=["MRPC"]))
    # selection on carved rows with the task's own rows edited as the transfer set (the search's recipe)
    import dataclasses

    carved = prepare(dataclasses.replace(cfg, out=str(tmp_path / "v"), val_split=0.25, transfer=["aug:STS-B:16"]))
    assert carved.info["transfer_examples"] == 16 and carved.info["train_examples"] == n_train - n_train // 4 + 16


def test_perturb_edits_words_and_is_seeded():
    import random

    from retort.data.augment import Vocabulary, perturb

    vocab = Vocabulary(["the cat sat on the mat", "a dog ran"])
    text = "quick brown fox jumps over one lazy hound"  # distinct words, none in the vocabulary
    a = [perturb(text, random.Random(s), vocab) for s in range(50)]
    assert a == [perturb(text, random.Random(s), vocab) for s in range(50)]
    assert all(x != text for x in a)  # at least one edit, and every edit changes such a sentence
    lengths = {len(x.split()) for x in a}
    assert min(lengths) < 8 < max(lengths)  # drops and repeats both happen
    assert perturb("word", random.Random(0), vocab).split()[0] in {"word", *vocab.words}


def test_augmented_and_own_task_transfer_sets(glue_dir):
    cola = get_task("CoLA")
    train = load_split(cola, "train", glue_dir)
    aug = load_transfer(cola, "aug:CoLA:50", glue_dir, seed=1)
    assert len(aug) == 50 and all(ex.label is None for ex in aug.examples)
    originals = {ex.texts for ex in train.examples}
    assert not any(ex.texts in originals for ex in aug.examples)
    assert aug.examples == load_transfer(cola, "aug:CoLA:50", glue_dir, seed=1).examples
    assert aug.examples != load_transfer(cola, "aug:CoLA:50", glue_dir, seed=2).examples
    mrpc = get_task("MRPC")
    pairs = load_transfer(mrpc, "aug:MRPC:20", glue_dir)
    assert all(len(ex.texts) == 2 for ex in pairs.examples)
    with pytest.raises(ConfigError, match="aug: takes a GLUE task.s name, the task.s own, or a data file"):
        load_transfer(cola, "aug:nothing.txt", glue_dir)
    # a task's own name: the rows after the capped training set
    capped = load_split(cola, "train", glue_dir, max_samples=10)
    both, added, _ = with_transfer(capped, ["CoLA:5"], glue_dir)
    assert added == 5 and [ex.texts for ex in both.examples[10:]] == [ex.texts for ex in train.examples[10:15]]
    with pytest.raises(DataError, match="no rows after"):
        with_transfer(train, ["CoLA"], glue_dir)


def test_augmented_copies_of_the_rows_left_after_a_carve(glue_dir, monkeypatch):
    """With --val-split, aug:TASK copies only the rows the student trains on, never a carved one."""
    from retort.data import transfer
    from retort.data.tasks import carve

    seen = []
    real = transfer.augment
    monkeypatch.setattr(transfer, "augment", lambda split, n, seed: seen.append(split) or real(split, n, seed))
    rest, val, _ = carve(load_split("CoLA", "train", glue_dir), 0.25, 0)
    both, added, _ = with_transfer(rest, ["aug:CoLA:30"], glue_dir)
    assert added == 30 and [ex.texts for ex in seen[0].examples] == [ex.texts for ex in rest.examples]
    assert not {ex.texts for ex in val.examples} & {ex.texts for ex in seen[0].examples}


def test_transfer_rows_with_the_texts_of_dev_rows_are_left_out(glue_dir, tmp_path):
    """A transfer set that holds a dev pair (MRPC's training pairs hold 114 of STS-B's dev pairs) would carry
    the teacher's label on an evaluation input into training: such rows are left out, in either order, with
    case, punctuation and spacing ignored, and counted by spec."""
    sts = get_task("STS-B")
    train, dev = load_split(sts, "train", glue_dir), load_split(sts, "dev", glue_dir)
    a, b = dev.examples[0].texts
    f = tmp_path / "pairs.tsv"
    f.write_text(f"{b.upper()}\t  {a}!\nsome text\tmore text\n{a}\tanother sentence\n", encoding="utf-8")
    both, added, dropped = with_transfer(train, [str(f)], glue_dir, held=[dev])
    assert added == 2 and dropped == {str(f): 1}
    assert [ex.texts for ex in both.examples[len(train) :]] == [("some text", "more text"), (a, "another sentence")]
    assert with_transfer(train, [str(f)], glue_dir)[1:] == (3, {})  # nothing held: nothing left out
