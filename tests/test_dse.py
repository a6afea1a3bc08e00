"""Distilled sentence embeddings: training on cached teacher scores, index and search, export."""

import json

import numpy as np
import pytest
import torch

from conftest import train_tiny_teacher
from retort.cli import main
from retort.data.tasks import load_split


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, glue_dir, tiny_model):
    out = tmp_path_factory.mktemp("dse-teacher")
    for task in ("STS-B", "MRPC"):
        train_tiny_teacher(glue_dir, tiny_model, out / task, task)
    return out


@pytest.mark.parametrize("task", ["STS-B", "MRPC"])
def test_dse_train_uses_the_cache_and_evaluates(tmp_path, glue_dir, teacher, task, monkeypatch):
    monkeypatch.setenv("RETORT_CACHE", str(tmp_path / "cache"))
    args = [
        "dse",
        "train",
        "--task",
        task,
        "--glue-dir",
        str(glue_dir),
        "--teacher",
        str(teacher / task / "model"),
        "--student",
        "2x32",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--c",
        "0.7",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    cached = list((tmp_path / "cache" / "teacher_outputs").glob("rows-*/*.npz"))
    assert len(cached) == 1  # the train split's pair scores (dev is scored by the student itself)
    stamp = cached[0].stat().st_mtime_ns
    # a second student reuses the cache: the teacher is not run again
    import retort.distill.teacher_cache as tc

    monkeypatch.setattr(tc, "predict", lambda *a, **k: (_ for _ in ()).throw(AssertionError("teacher ran")))
    assert main([*args, "--out", str(tmp_path / "b"), "--pooling", "cls"]) == 0
    assert cached[0].stat().st_mtime_ns == stamp
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    cfg = metrics["config"]
    assert cfg["dse"] and cfg["objective"]["alpha"] == 0.7 and cfg["objective"]["hard_weight"] == pytest.approx(0.3)
    assert cfg["objective"]["soft_loss"] == "mse"
    assert main(["eval", "--task", task, "--model", str(tmp_path / "a" / "model"), "--glue-dir", str(glue_dir)]) == 0
    ev = json.loads((tmp_path / "a" / "eval_dev.json").read_text())
    assert ev["results"]["dev"] == metrics["best"]["dev"]


def test_index_search_and_sentence_transformers_export(tmp_path, glue_dir, teacher, capsys, monkeypatch):
    monkeypatch.setenv("RETORT_CACHE", str(tmp_path / "cache"))  # its own: the teacher's scores are computed here
    out = tmp_path / "sts"
    assert (
        main(
            [
                "dse",
                "train",
                "--task",
                "STS-B",
                "--glue-dir",
                str(glue_dir),
                "--teacher",
                str(teacher / "STS-B" / "model"),
                "--student",
                "2x32",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    sentences = [e.texts[1] for e in load_split("STS-B", "dev", glue_dir).examples]
    (tmp_path / "cands.txt").write_text("\n".join(sentences) + "\n")
    assert (
        main(
            [
                "dse",
                "index",
                "--model",
                str(out / "model"),
                "--candidates",
                str(tmp_path / "cands.txt"),
                "--out",
                str(tmp_path / "index"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err  # stderr is not a terminal here: progress comes as lines
    assert "teacher outputs STS-B train: 48 of 48 rows new (kept): row" in err
    assert f"dse index: embedding candidates: row {len(sentences)}/{len(sentences)} (100%)" in err
    assert (
        main(
            [
                "dse",
                "search",
                "--index",
                str(tmp_path / "index"),
                "--query",
                sentences[3],
                "-k",
                "5",
                "--json",
                str(tmp_path / "hits.json"),
            ]
        )
        == 0
    )
    found = json.loads((tmp_path / "hits.json").read_text())
    hits = found["results"][0]
    assert len(hits) == 5 and hits[0]["score"] >= hits[-1]["score"] and found["score"] == "cosine"
    assert hits[0]["text"] == sentences[3]  # a sentence is most similar to itself under cosine
    # through a FAISS graph: recall@10 against exact search measured when built, the same top 5 here
    assert main(["dse", "index", "--model", str(out / "model"), "--candidates", str(tmp_path / "cands.txt"),
                 "--out", str(tmp_path / "hnsw"), "--faiss", "hnsw"]) == 0  # fmt: skip
    built = json.loads((tmp_path / "hnsw" / "index.json").read_text())["faiss"]
    assert built["kind"] == "hnsw" and built["params"]["M"] == 32 and built["recall_at_10"]["recall"] >= 0.9
    assert "recall@10" in capsys.readouterr().out
    assert main(["dse", "search", "--index", str(tmp_path / "hnsw"), "--query", sentences[3], "-k", "5", "--json",
                 str(tmp_path / "hits-hnsw.json")]) == 0  # fmt: skip
    graph = json.loads((tmp_path / "hits-hnsw.json").read_text())["results"][0]
    assert [h["index"] for h in graph] == [h["index"] for h in hits]
    assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(graph, hits))
    assert main(["dse", "search", "--index", str(tmp_path / "index"), "--query", sentences[3], "-k", "5", "--score",
                 "pair", "--json", str(tmp_path / "hits-pair.json")]) == 0  # fmt: skip
    pair = json.loads((tmp_path / "hits-pair.json").read_text())
    assert pair["score"] == "pair head: score" and "pair head: score" in capsys.readouterr().out
    assert main(["dse", "index", "--model", str(out / "model"), "--candidates", str(tmp_path / "cands.txt"),
                 "--out", str(tmp_path / "ivf"), "--faiss", "ivfpq"]) == 2  # fmt: skip
    assert "its codebooks need at least 10,000" in capsys.readouterr().err and not (tmp_path / "ivf").exists()

    # the pair head over precomputed embeddings equals the model's own pair forward
    from retort.deploy.dse import load_biencoder, score_against
    from retort.models.biencoder import embed_texts

    model, tok = load_biencoder(str(out / "model"))
    emb = embed_texts(model, tok, sentences[:4])
    direct = score_against(model, emb[0], emb)
    assert direct.shape == (4,)

    assert main(["dse", "export", "--model", str(out / "model"), "--out", str(tmp_path / "st")]) == 0
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    theirs = st.encode(sentences[:16], convert_to_numpy=True)
    ours = embed_texts(model, tok, sentences[:16])
    cos = (theirs * ours).sum(1) / (np.linalg.norm(theirs, axis=1) * np.linalg.norm(ours, axis=1))
    assert cos.min() > 0.9999, cos.min()
    # one ranking for one model: search (cosine) ranks the candidates as the export does
    every = st.encode(sentences, convert_to_numpy=True, normalize_embeddings=True)
    theirs_top = np.argsort(-(every @ every[3]), kind="stable")[:5].tolist()
    assert theirs_top == [h["index"] for h in hits]


def test_approximate_indexes_state_their_recall(tmp_path):
    """hnsw and ivfpq over 12,000 random unit vectors: recall@10 against exact search measured when built."""
    from retort.deploy import vectors

    emb = np.random.default_rng(0).standard_normal((12_000, 32)).astype(np.float32)
    for kind in ("flat", "hnsw", "ivfpq"):
        folder = tmp_path / kind
        folder.mkdir()
        record = vectors.build(kind, emb, folder)
        assert record["kind"] == kind and record["bytes"] == (folder / vectors.FILE).stat().st_size
        if kind == "flat":
            assert "recall_at_10" not in record
            continue
        assert record["recall_at_10"]["queries"] == 1000 and 0 < record["recall_at_10"]["recall"] <= 1
        scores, rows = vectors.top_k(vectors.load(folder, record), emb[7], 10)
        assert len(rows) == 10 and scores[0] >= scores[-1]
    assert record["params"]["nlist"] == 307 and record["params"]["m"] == 4  # 4 * sqrt(12000) > 12000 // 39


def test_index_errors_are_one_line(tmp_path, capsys):
    assert (
        main(
            [
                "dse",
                "index",
                "--model",
                str(tmp_path),
                "--candidates",
                str(tmp_path / "none.txt"),
                "--out",
                str(tmp_path / "i"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read candidates" in err
    assert main(["dse", "search", "--index", str(tmp_path), "--query", "x"]) == 2
    assert "not an index folder" in capsys.readouterr().err
    torch.manual_seed(0)


def test_dse_with_val_split_compares_held_out_pairs_with_the_teachers_pair_scores(tmp_path, glue_dir, teacher,
                                                                                  monkeypatch):  # fmt: skip
    """The held-out loss of a bi-encoder reads the cross-encoder's pair scores of the held-out rows (kept
    ahead, as for training), not a teacher pass over one side of each pair."""
    monkeypatch.setenv("RETORT_CACHE", str(tmp_path / "cache"))
    import retort.training.targets as targets

    monkeypatch.setattr(targets, "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError("teacher ran")))
    assert main(["dse", "train", "--task", "STS-B", "--glue-dir", str(glue_dir), "--teacher",
                 str(teacher / "STS-B" / "model"), "--student", "2x32", "--epochs", "1", "--threads", "1",
                 "--val-split", "8", "--no-progress", "--out", str(tmp_path / "v")]) == 0  # fmt: skip
    m = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert all(e["val_loss"]["loss"] >= 0 for e in m["evals"]) and set(m["best"]) == {"val"}
