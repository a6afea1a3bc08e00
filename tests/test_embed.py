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
