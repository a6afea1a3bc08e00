"""General distillation (``retort distill --general --corpus``): the corpus reader and its memory-mapped
shards, resumed tokenisation, clear errors for empty and binary files, and the general stage itself:
a few steps, exact resume after SIGKILL, and its student as a --student-init for task distillation."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from conftest import error_lines, sentence, train_tiny_teacher
from retort.cli import main
from retort.data import corpus
from retort.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(root: Path, docs: int = 60, seed: int = 0) -> Path:
    """Two WikiExtractor-style files and a plain-text one: documents of 2 to 8 sentences."""
    rng = random.Random(seed)
    (root / "AA").mkdir(parents=True, exist_ok=True)
    for f in range(2):
        lines = []
        for d in range(docs // 2):
            lines += [f'<doc id="{f}{d}" url="x" title="T{d}">', f"T{d}", ""]
            lines += [" ".join(sentence(rng) for _ in range(rng.randint(2, 8)))]
            lines += ["</doc>"]
        (root / "AA" / f"wiki_{f:02d}").write_text("\n".join(lines) + "\n")
    (root / "plain.txt").write_text("\n\n".join(" ".join(sentence(rng) for _ in range(6)) for _ in range(10)) + "\n")
    return root


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_packing_respects_length_and_documents(tmp_path, tokenizer):
    src = write_corpus(tmp_path / "c")
    packed = corpus.build(src, tokenizer, 24, tmp_path / "shards", min_tokens=4, progress=False)
    assert len(packed) > 20 and packed.tokens_total == sum(packed.lengths())
    for i in range(len(packed)):
        seq = packed[i]
        assert seq[0] == tokenizer.cls_token_id and seq[-1] == tokenizer.sep_token_id
        assert 6 <= len(seq) <= 24 and tokenizer.sep_token_id not in seq[1:-1]  # never across documents
    text = tokenizer.decode(packed[0][1:-1])
    assert "<doc" not in text and "doc>" not in text


def test_shards_are_read_back_and_an_interrupted_tokenisation_resumes(tmp_path, tokenizer):
    src = write_corpus(tmp_path / "c")
    whole = corpus.build(src, tokenizer, 24, tmp_path / "a", min_tokens=4, shard_tokens=300, progress=False)
    assert len(whole.shards) > 3  # several shards, each memory-mapped
    assert isinstance(whole.shards[0][0], np.memmap)
    # stopped after a few shards (a budget, or a kill between shards), then run again to the end
    part = corpus.build(src, tokenizer, 24, tmp_path / "b", min_tokens=4, shard_tokens=300, progress=False,
                        max_sequences=15)  # fmt: skip
    assert len(part) < len(whole)
    meta = json.loads(next((tmp_path / "b").rglob("meta.json")).read_text())
    assert not meta["done"] and meta["next"] != [0, 0]
    for tmp in (tmp_path / "b").rglob("*.npy"):  # a half-written shard under a temporary name is ignored
        if tmp.name.startswith("shard_00001.tokens"):
            (tmp.parent / "shard_00099.tokens.tmp.npy").write_bytes(b"half")
    rest = corpus.build(src, tokenizer, 24, tmp_path / "b", min_tokens=4, shard_tokens=300, progress=False)
    assert len(rest) == len(whole)
    assert all(np.array_equal(rest[i], whole[i]) for i in range(len(whole)))
    again = corpus.build(src, tokenizer, 24, tmp_path / "b", min_tokens=4, shard_tokens=300, progress=False)
    assert len(again.shards) == len(rest.shards)  # read back, nothing tokenised again


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"text\x00\x01\x02 more\n", "binary data"),
                                              (b"\xff\xfe bad utf8\n", "not UTF-8 text")])  # fmt: skip
def test_empty_or_binary_corpus_is_one_line(tmp_path, glue_dir, tiny_model, capsys, content, message):
    teacher = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t")
    bad = tmp_path / "corpus"
    write_corpus(bad)
    (bad / "AA" / "wiki_99").write_bytes(content)
    capsys.readouterr()
    code = main(["distill", "--general", "--corpus", str(bad), "--teacher", str(teacher / "model"),
                 "--student", "2x16", "--method", "multilevel", "--out", str(tmp_path / "g"),
                 "--no-progress"])  # fmt: skip
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and message in err[0] and "wiki_99" in err[0], err
    assert not (tmp_path / "g" / "model").exists()
    with pytest.raises(DataError, match="no such file"):
        corpus.corpus_files(tmp_path / "missing")


def _general_args(src: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    return ["distill", "--general", "--corpus", str(src), "--teacher", str(teacher), "--student", "2x16",
            "--student-init", "prune", "--prune-samples", "16", "--method", "multilevel", "--max-length", "24",
            "--batch-size", "8",
            "--epochs", "2", "--heldout-sequences", "8", "--threads", "1", "--save-every", "3", "--eval-every",
            "5", "--lr", "1e-3", "--out", str(out), "--no-progress", *extra]  # fmt: skip


def test_general_stage_then_task_distillation(tmp_path, glue_dir, tiny_model):
    teacher = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t") / "model"
    src = write_corpus(tmp_path / "c")
    assert main(_general_args(src, teacher, tmp_path / "g", "--corpus-sequences", "40")) == 0
    metrics = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert metrics["train_examples"] == 40 and metrics["dev_examples"] == {"heldout": 8}
    assert metrics["config"]["objective"]["stage"] == "intermediate" and metrics["config"]["general"]
    losses = [e["results"]["heldout"]["loss"] for e in metrics["evals"]]
    assert len(losses) >= 2 and all(np.isfinite(losses))
    log = [json.loads(x) for x in (tmp_path / "g" / "log.jsonl").read_text().splitlines()]
    first = next(r for r in log if "loss" in r)
    assert {"loss/hidden", "loss/attn"} <= set(first) and "loss/soft" not in first and first["tokens_per_s"] > 0
    # the general student starts the task stage
    assert main(["distill", "--task", "STS-B", "--glue-dir", str(glue_dir), "--teacher", str(teacher),
                 "--student", "2x16", "--student-init", str(tmp_path / "g" / "model"), "--epochs", "1",
                 "--threads", "1", "--out", str(tmp_path / "task"), "--no-progress"]) == 0  # fmt: skip
    task = json.loads((tmp_path / "task" / "metrics.json").read_text())
    assert "pearson" in task["best"]["dev"]
    # ... and a classification task's: a new head, the run's task name, the dev set scored once at the end
    mrpc = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t-mrpc", "MRPC") / "model"
    assert main(["distill", "--task", "MRPC", "--glue-dir", str(glue_dir), "--teacher", str(mrpc), "--student", "2x16",
                 "--student-init", str(tmp_path / "g" / "model"), "--epochs", "1", "--val-split", "8", "--threads",
                 "1", "--out", str(tmp_path / "mrpc"), "--no-progress"]) == 0  # fmt: skip
    task = json.loads((tmp_path / "mrpc" / "metrics.json").read_text())
    assert "f1" in task["dev_once"]["dev"]
    assert json.loads((tmp_path / "mrpc" / "model" / "config.json").read_text())["retort_task"] == "MRPC"


@pytest.mark.slow  # three fresh processes, about 35 s: run with -m slow (it passed when written)
def test_general_stage_resumes_exactly_after_sigkill(tmp_path, glue_dir, tiny_model):
    teacher = train_tiny_teacher(glue_dir, tiny_model, tmp_path / "t") / "model"
    src = write_corpus(tmp_path / "c")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RETORT_CACHE": str(tmp_path / "cache")}

    def cli(args, kill_at=0):  # with kill_at: killed with SIGKILL after that step (retort.training.hooks)
        hooks = (
            "import sys; from retort.training.hooks import install_hooks, kill_hooks; "
            f"install_hooks(kill_hooks(at_step={kill_at})); from retort.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        entry = ["-c", hooks] if kill_at else ["-m", "retort"]
        return subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, env=env, cwd=ROOT)

    whole = cli(_general_args(src, teacher, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    broken = cli(_general_args(src, teacher, tmp_path / "broken"), kill_at=7)
    assert broken.returncode == -9
    resumed = cli(["distill", "--out", str(tmp_path / "broken"), "--resume", "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((tmp_path / "broken" / "metrics.json").read_text())
    assert [e["results"] for e in a["evals"]] == [e["results"] for e in b["evals"]]
    wa = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "broken" / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
