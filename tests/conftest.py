"""Fixtures: a tiny random BERT with its own WordPiece vocabulary, and a tiny GLUE folder in the
official TSV layout for all nine tasks. Everything is made here; nothing comes from the network."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RETORT_QUIET_WAIT_S"] = "0"  # retort compress plans at once (tests time tiny models, not a machine)

WORDS = (
    "the a cat dog man woman car plays runs eats sleeps red blue big small happy sad "
    "quickly slowly house tree river city guitar piano food water is was not very good bad"
).split()


def sentence(rng: random.Random, n: int | None = None) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(3, 12))).capitalize() + "."


def write_tsv(path: Path, header: list[str] | None, rows: list[list[str]], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    text = "\n".join(lines) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def make_glue(root: Path, n_train: int = 48, n_dev: int = 24, seed: int = 0) -> Path:
    """All nine tasks, official column layouts; MNLI with full-column files and a reduced train subset."""
    rng = random.Random(seed)
    s = lambda: sentence(rng)  # noqa: E731
    for split, n in (("train", n_train), ("dev", n_dev)):
        write_tsv(root / "CoLA" / f"{split}.tsv", None, [["gj04", str(rng.randint(0, 1)), "", s()] for _ in range(n)])
        write_tsv(
            root / "SST-2" / f"{split}.tsv",
            ["sentence", "label"],
            [[s().lower(), str(rng.randint(0, 1))] for _ in range(n)],
        )
        write_tsv(
            root / "MRPC" / f"{split}.tsv",
            ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
            [[str(rng.randint(0, 1)), str(1000 + i), str(2000 + i), s(), s()] for i in range(n)],
            bom=True,
        )
        write_tsv(
            root / "STS-B" / f"{split}.tsv",
            [
                "index",
                "genre",
                "filename",
                "year",
                "old_index",
                "source1",
                "source2",
                "sentence1",
                "sentence2",
                "score",
            ],
            [
                [
                    str(i),
                    "main-captions",
                    "MSRvid",
                    "2012test",
                    str(i),
                    "none",
                    "none",
                    s(),
                    s(),
                    f"{rng.uniform(0, 5):.3f}",
                ]
                for i in range(n)
            ],
        )
        write_tsv(
            root / "QQP" / f"{split}.tsv",
            ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
            [[str(i), str(2 * i), str(2 * i + 1), s(), s(), str(rng.randint(0, 1))] for i in range(n)],
        )
        write_tsv(
            root / "QNLI" / f"{split}.tsv",
            ["index", "question", "sentence", "label"],
            [[str(i), s(), s(), rng.choice(["entailment", "not_entailment"])] for i in range(n)],
        )
        write_tsv(
            root / "RTE" / f"{split}.tsv",
            ["index", "sentence1", "sentence2", "label"],
            [[str(i), s(), s(), rng.choice(["entailment", "not_entailment"])] for i in range(n)],
        )
        write_tsv(
            root / "WNLI" / f"{split}.tsv",
            ["index", "sentence1", "sentence2", "label"],
            [[str(i), s(), s(), str(rng.randint(0, 1))] for i in range(n)],
        )
    nli = ["entailment", "neutral", "contradiction"]
    full = [
        "index",
        "promptID",
        "pairID",
        "genre",
        "sentence1_binary_parse",
        "sentence2_binary_parse",
        "sentence1_parse",
        "sentence2_parse",
        "sentence1",
        "sentence2",
        "label1",
        "label2",
        "label3",
        "label4",
        "label5",
        "gold_label",
    ]
    for split in ("dev_matched", "dev_mismatched"):
        rows = []
        for i in range(n_dev):
            gold = rng.choice(nli)
            rows.append(
                [
                    str(i),
                    "1",
                    "1e",
                    "fiction",
                    "( x )",
                    "( y )",
                    "(ROOT x)",
                    "(ROOT y)",
                    s(),
                    s(),
                    gold,
                    gold,
                    gold,
                    gold,
                    gold,
                    gold,
                ]
            )
        write_tsv(root / "MNLI" / f"{split}.tsv", full, rows)
    write_tsv(
        root / "MNLI" / f"train_subset_{n_train}.tsv",
        ["sentence1", "sentence2", "gold_label"],
        [[s(), s(), rng.choice(nli)] for _ in range(n_train)],
    )
    return root


def make_tiny_model(root: Path, layers: int = 4, hidden: int = 32, heads: int = 4, dropout: float = 0.1) -> Path:
    """A random BERT encoder (no task head, like the real base model) and a WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    root.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *sorted(set(WORDS))]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # vocab= (a path): under transformers 5 vocab_file= is ignored and the tokenizer keeps its 5 special tokens
    BertTokenizer(vocab=str(root / "vocab.txt"), do_lower_case=True).save_pretrained(root)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(root, safe_serialization=True)
    return root


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory):
    """Teacher caches go to this session's temporary folder, never to ~/.cache/retort. Session-scoped, so
    it is in place before the session fixtures that train models (a function-scoped one came after them,
    and their teacher logits landed in the user's cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETORT_CACHE", str(tmp_path_factory.getbasetemp() / "retort-cache"))
        yield


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    return make_glue(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


def train_tiny_teacher(glue_dir: Path, tiny_model: Path, out: Path, task: str = "STS-B") -> Path:
    """One epoch of ``retort teacher`` on the tiny model and data; returns the run folder."""
    from retort.cli import main

    args = [
        "teacher",
        "--task",
        task,
        "--glue-dir",
        str(glue_dir),
        "--base",
        str(tiny_model),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    return out


_PROGRESS = re.compile(r"^.+: (row|step) \d+/\d+ \(\d+%\), ")


def error_lines(text: str) -> list[str]:
    """stderr without progress lines (retort/progress.py) and transformers' weight-loading notes."""
    return [
        x
        for x in text.strip().splitlines()
        if not x.startswith(("Loading weights", "warning: this machine is busy")) and not _PROGRESS.match(x)
    ]


@contextlib.contextmanager
def alarm(seconds: int, handler):
    """Call ``handler`` (which raises) if the body is still running after ``seconds``; the previous
    SIGALRM handler is put back."""
    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
