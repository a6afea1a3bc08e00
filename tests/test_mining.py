"""Mined sentence pairs (retort/distill/mining.py, ``retort mine-pairs``): corpus reading, exact neighbours, the mix
of pair kinds, and a file that ``--transfer`` reads."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from conftest import sentence
from retort.cli import main
from retort.data.tasks import get_task
from retort.data.transfer import load_transfer
from retort.distill.mining import (
    KINDS,
    Sentence,
    mine_pairs,
    nearest,
    parse_mix,
    read_corpus,
    split_sentences,
)
from retort.errors import ConfigError, DataError


def write_wiki(path, docs: int = 6, paragraphs: int = 3, seed: int = 0):
    """WikiExtractor layout: <doc> blocks, a title line, paragraphs of several sentences."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for d in range(docs):
        lines += [f'<doc id="{d}" url="http://x?curid={d}" title="Title {d}">', f"Title {d}", ""]
        for _ in range(paragraphs):
            lines.append(" ".join(sentence(rng, rng.randint(6, 12)) for _ in range(4)))
        lines += ["Section heading", "</doc>"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_split_and_read_corpus(tmp_path):
    assert split_sentences('One two three. "Four five?" Six! seven. Eight') == [
        "One two three.",
        '"Four five?"',
        "Six! seven.",
        "Eight",
    ]
    f = tmp_path / "wiki_00"
    f.write_text(
        '<doc id="1" title="A">\nA\n\nThe red cat sleeps in the big house. The dog runs to the river quickly.\n'
        "Heading without a stop\n</doc>\n"
        '<doc id="2" title="B">\nB\n\nThe red cat sleeps in the big house. A man plays the old piano.\nToo short.\n'
        "</doc>\n",
        encoding="utf-8",
    )
    got = read_corpus([f], min_words=4, max_words=20)
    assert [s.text for s in got] == [
        "The red cat sleeps in the big house.",
        "The dog runs to the river quickly.",
        "A man plays the old piano.",  # the repeated sentence is kept once; headings and short lines go
    ]
    assert got[0].doc == got[1].doc != got[2].doc
    with pytest.raises(DataError, match="no sentences"):
        read_corpus([f], min_words=30)
    with pytest.raises(DataError, match="no such file"):
        read_corpus([tmp_path / "missing"])


def test_parse_mix():
    assert parse_mix("neighbour=1,random=3") == {k: {"neighbour": 0.25, "random": 0.75}.get(k, 0.0) for k in KINDS}
    assert abs(sum(parse_mix(None).values()) - 1) < 1e-9
    for bad in ("typo=1", "random=-1", "random=x", "random=0"):
        with pytest.raises(ConfigError):
            parse_mix(bad)


def test_nearest_is_exact_and_leaves_out_the_row_itself():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(37, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    got = nearest(e, 5, block=8)  # several row blocks
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    np.testing.assert_array_equal(got, np.argsort(-sim, axis=1)[:, :5])


def test_mine_pairs_follows_the_mix_and_the_seed():
    rng = random.Random(1)
    pool = [Sentence(f"{sentence(rng, 8)} {i}", doc=i // 10) for i in range(200)]
    emb = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pairs = mine_pairs(pool, emb, 300, seed=3)
    assert len(pairs) == 300 and pairs == mine_pairs(pool, emb, 300, seed=3) != mine_pairs(pool, emb, 300, seed=4)
    counts = {k: sum(1 for *_, kind in pairs if kind == k) for k in KINDS}
    assert all(counts[k] > 0 for k in KINDS) and counts["neighbour"] > counts["random"]
    texts = {s.text: s for s in pool}
    knn = nearest(emb, 3)
    index = {s.text: i for i, s in enumerate(pool)}
    for a, b, kind in pairs:
        assert a != b
        if kind == "document":
            assert texts[a].doc == texts[b].doc
        if kind == "neighbour":
            assert index[b] in knn[index[a]] or index[a] in knn[index[b]]
        if kind == "edited":
            assert (a in texts) != (b in texts)  # one side is the anchor, the other an edited copy
    only_random = mine_pairs(pool, None, 50, mix="random=1")
    assert {k for *_, k in only_random} == {"random"}
    with pytest.raises(ConfigError, match="embedding"):
        mine_pairs(pool, None, 10)


def test_cli_writes_a_transfer_set(tmp_path, tiny_model, capsys):
    corpus = write_wiki(tmp_path / "corpus" / "AA" / "wiki_00")
    out = tmp_path / "pairs.tsv"
    argv = ["mine-pairs", "--corpus", str(corpus.parent.parent), "--out", str(out), "--pairs", "40"]
    assert main([*argv, "--model", str(tiny_model), "--min-words", "4", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "wrote 40 pairs" in captured.out
    assert "mine-pairs: embedding 40 sentences: row 40/40 (100%)" in captured.err  # progress, as a line
    record = json.loads((tmp_path / "pairs.tsv.json").read_text())
    assert record["pairs"] == 40 and sum(record["kinds"].values()) == 40 and record["pool"] == 40
    split = load_transfer(get_task("STS-B"), f"{out}:25")
    assert len(split) == 25 and all(len(ex.texts) == 2 and ex.label is None for ex in split.examples)
