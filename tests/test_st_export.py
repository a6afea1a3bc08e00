"""retort export of a sentence-transformers folder: the export serves the vectors SentenceTransformer.encode
gives (fp32 within 1e-4, int8 close in cosine) through the runtime and dse index/search, says in its record
that it scores by cosine only, and a folder it cannot reproduce is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import error_lines
from retort.cli import main
from retort.deploy import runtime
from retort.deploy.st_export import SAMPLE_SENTENCES
from retort.errors import RetortError

pytestmark = pytest.mark.filterwarnings("ignore")

FAST = ["--threads", "1"]
TEXTS = ["The cat plays near the dog.", "A man eats.", "Rain", *SAMPLE_SENTENCES[8:14]]  # one past max_seq_length


def _save(tiny_model: Path, out: Path, pooling: str, dense: bool, normalize: bool, max_seq_length: int) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules
    from torch import nn

    torch.manual_seed(0)
    transformer = modules.Transformer(str(tiny_model), max_seq_length=max_seq_length)
    dims = transformer.get_embedding_dimension()
    parts = [transformer, modules.Pooling(dims, pooling)]
    parts += [modules.Dense(dims, 16, activation_function=nn.Tanh())] if dense else []
    parts += [modules.Normalize()] if normalize else []
    SentenceTransformer(modules=parts, device="cpu").save(str(out))
    return out


def _old_layout(folder: Path) -> Path:
    """The layout of sentence-transformers 2.x: the transformer in 0_Transformer with its own
    sentence_bert_config.json, the pooling as pooling_mode_*_token flags."""
    sub = folder / "0_Transformer"
    sub.mkdir()
    for p in list(folder.iterdir()):
        if p.is_file() and p.name not in ("modules.json", "config_sentence_transformers.json", "README.md"):
            p.rename(sub / p.name)
    (sub / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 20, "do_lower_case": False}))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False,
         "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))  # fmt: skip
    types = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling"]
    modules = [{"idx": i, "name": str(i), "path": path, "type": t}
               for i, (path, t) in enumerate(zip(["0_Transformer", "1_Pooling"], types))]  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


@pytest.fixture(scope="module")
def st_folders(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """Mean pooling with a Tanh Dense layer and Normalize (sentence-transformers 6's layout), and cls pooling
    alone in the old 0_Transformer layout."""
    root = tmp_path_factory.mktemp("st")
    return {
        "mean-dense-normalize": _save(tiny_model, root / "new", "mean", True, True, 24),
        "cls-0_Transformer": _old_layout(_save(tiny_model, root / "old", "cls", False, False, 32)),
    }


@pytest.fixture(scope="module")
def exported(st_folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("st-export") / "x"
    assert main(["export", "--model", str(st_folders["mean-dense-normalize"]), "--out", str(out), *FAST]) == 0
    return out


def _st_vectors(folder: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(texts)


def test_the_export_record_says_cosine_only(exported, st_folders):
    meta = json.loads((exported / runtime.META_NAME).read_text())
    assert meta["kind"] == "biencoder" and meta["source_format"] == "sentence-transformers"
    assert meta["modules"] == ["Transformer", "Pooling", "Dense", "Normalize"] and meta["normalized"]
    assert meta["pooling"] == "mean" and meta["embedding_dim"] == 16 and meta["output"] == "embeddings"
    assert meta["pair_head"] is False and meta["score"] == "cosine" and meta["task"] is None
    assert meta["max_length"] == 24 and meta["max_positions"] == 64  # its max_seq_length
    assert not (exported / runtime.HEAD_NAME).exists() and (exported / "tokenizer.json").is_file()
    ev = meta["evaluation"]
    assert ev["sentences"] == len(SAMPLE_SENTENCES) and ev["max_abs_diff"] < 1e-4 and ev["min_cosine"] > 0.9999
    assert "dev" not in json.dumps(ev)  # no invented task score


def test_fp32_export_embeds_as_sentence_transformers(exported, st_folders, tmp_path):
    ours = runtime.OnnxModel(exported).embed(TEXTS, batch_size=4)  # padded batches, one text truncated
    assert np.abs(ours - _st_vectors(st_folders["mean-dense-normalize"], TEXTS)).max() < 1e-4
    old = tmp_path / "old"
    assert main(["export", "--model", str(st_folders["cls-0_Transformer"]), "--out", str(old), *FAST, "--no-eval"]) == 0
    meta = json.loads((old / runtime.META_NAME).read_text())
    assert meta["pooling"] == "cls" and meta["max_length"] == 20 and meta["modules"] == ["Transformer", "Pooling"]
    ours = runtime.OnnxModel(old).embed(TEXTS, batch_size=4)
    assert np.abs(ours - _st_vectors(st_folders["cls-0_Transformer"], TEXTS)).max() < 1e-4


def test_int8_dynamic_export_stays_close(st_folders, glue_dir, tmp_path):
    """Quantised, checked on a task's sentences (--task lends them: the export still has no task)."""
    out = tmp_path / "q"
    folder = st_folders["mean-dense-normalize"]
    args = ["export", "--model", str(folder), "--out", str(out), *FAST, "--quantize", "int8-dynamic"]
    assert main([*args, "--task", "STS-B", "--glue-dir", str(glue_dir)]) == 0
    meta = json.loads((out / runtime.META_NAME).read_text())
    assert meta["task"] is None and meta["quantization"] == "int8-dynamic"
    assert meta["evaluation"]["from"] == "STS-B dev" and meta["evaluation"]["min_cosine"] > 0.95
    ours, ref = runtime.OnnxModel(out).embed(TEXTS), _st_vectors(folder, TEXTS)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.95


def test_index_and_search_rank_by_cosine_only(exported, st_folders, tmp_path, capsys):
    cands = tmp_path / "cands.txt"
    cands.write_text("\n".join(TEXTS) + "\n")
    index = ["dse", "index", "--model", str(exported), "--candidates", str(cands), "--out", str(tmp_path / "i")]
    assert main(index) == 0
    assert json.loads((tmp_path / "i" / "index.json").read_text())["pooling"] == "mean"
    query = ["--index", str(tmp_path / "i"), "--query", "A cat plays.", "-k", str(len(TEXTS))]
    assert main(["dse", "search", *query, "--json", str(tmp_path / "s.json")]) == 0
    ranked = [r["text"] for r in json.loads((tmp_path / "s.json").read_text())["results"][0]]
    vecs = _st_vectors(st_folders["mean-dense-normalize"], [*TEXTS, "A cat plays."])
    assert ranked == [TEXTS[i] for i in (-(vecs[:-1] @ vecs[-1])).argsort(kind="stable")]  # normalised vectors
    capsys.readouterr()
    assert main(["dse", "search", *query, "--score", "pair"]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "no pair head" in err[0] and "cosine" in err[0]
    model = runtime.OnnxModel(exported)
    with pytest.raises(RetortError, match="cosine"):
        model.score_against(model.embed(["a"])[0], model.embed(["b", "c"]))
    assert model.default_label() is None
    assert main(["eval", "--model", str(exported)]) == 2  # no task head: one line pointing to embed eval
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "embed eval" in err[0]


def test_bench_times_what_serving_it_costs(exported, glue_dir, tmp_path):
    """``retort bench`` of a head-less export embeds each text of a row (a pair: both, and their cosine)."""
    out = tmp_path / "b.json"
    args = ["bench", "--model", str(exported), "--task", "STS-B", "--glue-dir", str(glue_dir), "--batch-sizes", "1",
            "--samples", "8", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    run = json.loads(out.read_text())
    assert run["scores"] == "cosine" and run["kind"] == "biencoder" and run["latency"][0]["ms_per_sample_p50"] > 0


@pytest.mark.parametrize(
    "fault, message",
    [
        ("lstm", "modules.json: module 1 is sentence_transformers.models.LSTM"),
        ("order", "in that order"),
        ("max", "1_Pooling/config.json: pooling max; retort reads mean or cls"),
        ("prompt", "config_sentence_transformers.json: default_prompt_name 'query'"),
        ("max-drop", "--max-drop: a sentence-transformers folder has no task score"),
    ],
)
def test_what_it_cannot_export_is_one_line(st_folders, tmp_path, capsys, fault, message):
    folder = tmp_path / "st"
    shutil.copytree(st_folders["mean-dense-normalize"], folder)
    modules = json.loads((folder / "modules.json").read_text())
    extra = []
    if fault == "lstm":
        modules.insert(1, {"idx": 1, "name": "1", "path": "1_LSTM", "type": "sentence_transformers.models.LSTM"})
    elif fault == "order":
        modules[2], modules[3] = modules[3], modules[2]
    elif fault == "max":
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "max"}))
    elif fault == "prompt":
        (folder / "config_sentence_transformers.json").write_text(
            json.dumps({"prompts": {"query": "query: "}, "default_prompt_name": "query"}))  # fmt: skip
    else:
        extra = ["--max-drop", "0.01"]
    (folder / "modules.json").write_text(json.dumps(modules))
    assert main(["export", "--model", str(folder), "--out", str(tmp_path / "x"), *extra]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x").exists()
