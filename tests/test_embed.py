"""``retort embed``: a static (Model2Vec) model distilled from a tiny encoder, and STS-style evaluation of
embedding models (Spearman of cosine), offline on the tiny GLUE folder."""

from __future__ import annotations

import json

import pytest

from conftest import error_lines
from retort.cli import main


@pytest.fixture(scope="module")
def static(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "m2v"
    assert main(["embed", "static", "--model", str(tiny_model), "--out", str(out)]) == 0
    return out


def test_static_embeddings_distilled_and_recorded(static, tiny_model):
    record = json.loads((static / "retort_static.json").read_text())
    assert record["teacher"] == str(tiny_model.resolve()) and record["vocabulary"] > 10
    assert 0 < record["dims"] <= 32  # PCA to at most the teacher's width
    from model2vec import StaticModel

    assert StaticModel.from_pretrained(str(static)).encode(["a cat plays"]).shape == (1, record["dims"])


def test_embedding_models_scored_on_sts_pairs(static, glue_dir, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["embed", "eval", "--model", str(static), "--glue-dir", str(glue_dir), "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["kind"] == "model2vec" and row["task"] == "STS-B" and row["pairs"] == 24
    assert -1 <= row["spearman"] <= 1 and "Spearman" in capsys.readouterr().out
    assert row["parameters"] > 0 and row["speed"]["ms_per_sentence_b1"] > 0 and row["speed"]["rounds"] == 3


def test_embed_refuses_in_one_line(static, glue_dir, tmp_path, capsys):
    assert main(["embed", "eval", "--model", str(static), "--task", "RTE", "--glue-dir", str(glue_dir)]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "needs sentence pairs with a score" in err[0]
    assert main(["embed", "eval", "--model", str(static), str(tmp_path / "none"), "--glue-dir", str(tmp_path)]) == 2
    err = error_lines(capsys.readouterr().err)  # the missing model is named, not the missing data
    assert len(err) == 1 and f"--model {tmp_path / 'none'}: no such model folder" in err[0]
    assert main(["embed", "static", "--model", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "not a model folder" in err[0] and not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def st_teacher(tiny_model, tmp_path_factory):
    """The tiny encoder as a sentence-transformers teacher: Transformer, mean Pooling, Normalize."""
    from sentence_transformers import SentenceTransformer, models

    transformer = models.Transformer(str(tiny_model), max_seq_length=32)
    dims = transformer.get_embedding_dimension()
    out = tmp_path_factory.mktemp("st-teacher") / "teacher"
    SentenceTransformer(modules=[transformer, models.Pooling(dims, "mean"), models.Normalize()], device="cpu").save(
        str(out)
    )
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    nouns, verbs = ["cat", "dog", "bird", "fish", "child", "river"], ["plays", "runs", "sleeps", "swims", "waits"]
    path.write_text("".join(f"The {n} {v} near the {m} every single day.\n" for n in nouns for v in verbs
                            for m in nouns[:2]))  # fmt: skip
    return path


def test_embedding_distillation_to_a_sentence_transformers_folder(st_teacher, corpus, tmp_path, capsys):
    """A pruned, narrower student learns the teacher's vectors; the saved folder loads in sentence-transformers
    and computes the student's own vectors (projection and normalisation included); a second run takes the
    teacher's vectors from the cache."""
    from sentence_transformers import SentenceTransformer

    from retort.training.embedding import EmbeddingStudent  # noqa: F401  (the class the folder was saved from)

    out = tmp_path / "student"
    args = ["embed", "distill", "--teacher", str(st_teacher), "--corpus", str(corpus), "--student", "1x16",
            "--epochs", "2", "--batch-size", "8", "--held-out", "10", "--threads", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    record = json.loads((out / "retort_embed.json").read_text())
    assert record["held_out"] == 6 and len(record["history"]) == 2 and not record["teacher_cached"]
    assert record["parameters"] == sum(p.numel() for p in SentenceTransformer(str(out), device="cpu").parameters())
    assert record["best_epoch"] in (1, 2) and record["start"] == "1x16 from the teacher (prune)"
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((out / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Dense", "Normalize"]  # 16 wide, projected to the teacher's 32
    student, teacher = SentenceTransformer(str(out), device="cpu"), SentenceTransformer(str(st_teacher), device="cpu")
    v = student.encode(["The cat plays near the dog every single day."])
    assert v.shape == teacher.encode(["a"]).shape and abs(float((v**2).sum()) - 1) < 1e-5
    assert "SentenceTransformer(" in capsys.readouterr().out
    cands = tmp_path / "cands.txt"  # served by dse index / search, ranked as sentence-transformers ranks
    cands.write_text("The cat plays near the dog every single day.\nThe river waits.\nA bird swims near the fish.\n")
    assert main(["dse", "index", "--model", str(out), "--candidates", str(cands), "--out", str(tmp_path / "i")]) == 0
    assert main(["dse", "search", "--index", str(tmp_path / "i"), "--query", "The cat plays.", "--json",
                 str(tmp_path / "s.json")]) == 0  # fmt: skip
    found = json.loads((tmp_path / "s.json").read_text())
    ranked = [r["text"] for r in found["results"][0]]
    lines = cands.read_text().splitlines()
    cos = student.encode(lines) @ student.encode(["The cat plays."])[0]
    assert ranked == [lines[i] for i in (-cos).argsort(kind="stable")]
    again = ["embed", "distill", "--teacher", str(st_teacher), "--corpus", str(corpus), "--student", "1x32",
             "--student-init", "teacher", "--epochs", "1", "--held-out", "10", "--threads", "1", "--out",
             str(tmp_path / "s2")]  # fmt: skip
    assert main(again) == 0
    record = json.loads((tmp_path / "s2" / "retort_embed.json").read_text())
    assert record["teacher_cached"] and "Dense" not in (tmp_path / "s2" / "modules.json").read_text()


def test_embedding_distillation_refuses_in_one_line(tiny_model, st_teacher, corpus, tmp_path, capsys):
    base = ["embed", "distill", "--corpus", str(corpus), "--threads", "1"]
    assert main([*base, "--teacher", str(tiny_model), "--out", str(tmp_path / "a")]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "not a sentence-transformers folder" in err[0] and not (tmp_path / "a").exists()
    assert main([*base, "--teacher", str(st_teacher), "--out", str(corpus)]) == 2  # the corpus is read
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "--out" in err[0]
    assert main([*base, "--teacher", str(st_teacher), "--student-init", "nowhere", "--out", str(tmp_path / "c")]) == 2
    err = error_lines(capsys.readouterr().err)  # before the teacher's vectors are computed
    assert len(err) == 1 and "--student-init nowhere" in err[0] and not (tmp_path / "c").exists()
    few = tmp_path / "few.txt"
    few.write_text("The cat plays near the dog every day.\n")
    assert (
        main(["embed", "distill", "--corpus", str(few), "--teacher", str(st_teacher), "--out", str(tmp_path / "b")])
        == 2
    )
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "at least 10 are needed" in err[0] and not (tmp_path / "b").exists()


def test_the_saved_folder_computes_the_students_own_vectors(st_teacher, tmp_path):
    """What ``SentenceTransformer(out).encode`` gives is what the student computed in training (pooling,
    projection to the teacher's width, normalisation), within 1e-5."""
    import torch
    from sentence_transformers import SentenceTransformer

    from retort.training import embedding

    texts = ["The cat plays near the dog.", "A bird swims in the river every day, they say."]
    model, tok, _ = embedding.build(st_teacher, "2x16", "random", texts, 32, True)
    embedding.save(model.eval(), tok, tmp_path / "s", {"test": True}, max_length=32)
    with torch.no_grad():
        enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
        ours = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")).numpy()
    theirs = SentenceTransformer(str(tmp_path / "s"), device="cpu").encode(texts)
    assert abs(ours - theirs).max() < 1e-5


def test_a_student_pruned_from_another_model_with_its_own_tokenizer(st_teacher, corpus, tmp_path):
    """``--student-init FOLDER``: the LxH student is pruned from another model (here a 3x24 encoder with a
    vocabulary of its own), keeps that model's tokenizer, and its projection to the teacher's width starts at
    the ridge fit (recorded; closer to the teacher than a random projection)."""
    import torch
    from transformers import BertModel, BertTokenizer

    from conftest import make_tiny_model
    from retort.training import embedding

    other = make_tiny_model(tmp_path / "other", layers=3, hidden=24, heads=4)
    words = (other / "vocab.txt").read_text().splitlines()
    (other / "vocab.txt").write_text("\n".join([*words, "zebra", "quokka"]) + "\n")  # a vocabulary of its own
    BertTokenizer(vocab=str(other / "vocab.txt"), do_lower_case=True).save_pretrained(other)
    encoder = BertModel.from_pretrained(str(other))
    encoder.resize_token_embeddings(len(words) + 2)
    encoder.save_pretrained(other)
    out = tmp_path / "student"
    assert main(["embed", "distill", "--teacher", str(st_teacher), "--corpus", str(corpus), "--student", "2x16",
                 "--student-init", str(other), "--epochs", "1", "--held-out", "10", "--threads", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    record = json.loads((out / "retort_embed.json").read_text())
    assert record["start"] == f"2x16 from {other} (pruned)" and record["projection_fit"]["ridge"] in embedding.RIDGE
    assert "quokka" in (out / "tokenizer.json").read_text()
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (2, 16, len(words) + 2)
    texts = [line for line in corpus.read_text().splitlines() if line][:40]
    target = torch.nn.functional.normalize(torch.randn(len(texts), 32), dim=-1).numpy()
    model, tok, _ = embedding.build(st_teacher, "2x16", str(other), texts, 32, True)
    torch.manual_seed(0)
    before = embedding.held_out_cosine(model, tok, texts, target)
    fitted = embedding.fit_projection(model, tok, texts, target)
    assert fitted["sentences"] == 40 and embedding.held_out_cosine(model, tok, texts, target) > before
    assert model.dense.weight.abs().max() < 100  # ridge: no degenerate least-squares weights
