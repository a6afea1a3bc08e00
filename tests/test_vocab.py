"""Vocabulary pruning (``models/vocab.py``): kept rows in order, the same tokens and outputs for texts made of
kept tokens, unseen words split into kept pieces rather than [UNK], non-WordPiece tokenizers refused."""

from __future__ import annotations

import json
import string

import pytest
import torch

from retort.errors import RetortError
from retort.models.vocab import prune_vocabulary

WORDS = ["cab", "bad", "dab", "the", "cat", "sat"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("vocab-bert")
    chars = list(string.ascii_lowercase)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *chars, *("##" + c for c in chars), *WORDS, "##bed"]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab=str(root / "vocab.txt"), do_lower_case=True).save_pretrained(root)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    BertModel(config).eval().save_pretrained(root, safe_serialization=True)
    return root


def test_pruned_model_reads_its_texts_as_before(model_dir, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    full, tok = AutoModel.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)
    info = prune_vocabulary(AutoModel.from_pretrained(model_dir), model_dir, ["the cat sat", "cab"], tmp_path / "p")
    small, ptok = AutoModel.from_pretrained(tmp_path / "p").eval(), AutoTokenizer.from_pretrained(tmp_path / "p")
    assert info["kept"] < info["of"] and small.config.vocab_size == info["kept"]
    assert small.get_input_embeddings().weight.shape[0] == info["kept"]
    assert "bad" not in ptok.get_vocab() and "cab" in ptok.get_vocab() and "##b" in ptok.get_vocab()
    for text in (["the cat sat."], ["cab", "the cat"]):
        a, b = tok(*text, return_tensors="pt"), ptok(*text, return_tensors="pt")
        assert tok.convert_ids_to_tokens(a["input_ids"][0]) == ptok.convert_ids_to_tokens(b["input_ids"][0])
        with torch.no_grad():
            diff = (full(**a).last_hidden_state - small(**b).last_hidden_state).abs().max().item()
        assert diff < 1e-5
    kept = [t for t, _ in sorted(ptok.get_vocab().items(), key=lambda kv: kv[1])]
    order = {t: i for i, t in enumerate((model_dir / "vocab.txt").read_text().split())}
    assert [order[t] for t in kept] == sorted(order[t] for t in kept)  # the teacher's order
    # an unseen word splits into kept pieces, never [UNK]: "cabbed" was cab ##bed, now cab ##b ##e ##d
    assert tok.tokenize("cabbed") == ["cab", "##bed"] and ptok.tokenize("cabbed") == ["cab", "##b", "##e", "##d"]
    assert ptok.tokenize("bad") == ["b", "##a", "##d"]


def test_a_tokenizer_that_is_not_word_piece_is_refused(model_dir, tmp_path):
    from transformers import AutoModel

    other = tmp_path / "bpe"
    other.mkdir()
    (other / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}}}))
    with pytest.raises(RetortError, match="WordPiece tokenizers only, not BPE"):
        prune_vocabulary(AutoModel.from_pretrained(model_dir), other, ["x"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
