"""Vocabulary pruning: keep only the word-embedding rows a user's texts use (issue #30's size lever).

A 3x384 student of all-MiniLM-L6-v2 keeps 17.4M parameters, 11.7M of them the 30,522 x 384 word embeddings,
and a task's texts use a few thousand of those tokens. ``prune_vocabulary`` keeps:

- every token the given texts tokenise to (the training texts, and a corpus when one is given);
- every special and added token ([PAD], [CLS], ...);
- every single-character token and its ``##`` continuation, so that a word the texts never showed still
  splits into smaller pieces (down to single characters) instead of becoming [UNK]: what the model then
  sees for an unseen word is a longer row of pieces it may have met less often, so quality on words
  outside the kept set can drop, while no input that the full vocabulary read without [UNK] gets one.

The kept rows keep their order; the tokenizer's vocabulary, added tokens and post-processor ids are renumbered
to match, and ``config.vocab_size`` (and ``pad_token_id``) follow. Inputs made only of kept tokens give the
same token strings and the same outputs as before. WordPiece tokenizers only (BERT, MPNet, DistilBERT,
ELECTRA); a BPE or Unigram tokenizer is refused in one line: their merges and scores tie tokens together,
and removing one can change how other words split.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from retort.errors import RetortError


def _word_piece(folder: Path) -> dict:
    """``tokenizer.json`` of a fast WordPiece tokenizer in ``folder``, or one line saying why not."""
    path = folder / "tokenizer.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RetortError(f"{path}: vocabulary pruning needs a fast tokenizer's tokenizer.json ({e})") from None
    kind = data.get("model", {}).get("type")
    if kind != "WordPiece":
        raise RetortError(f"{path}: vocabulary pruning supports WordPiece tokenizers only, not {kind}")
    return data


def used_ids(tokenizer, texts: Iterable[str], batch: int = 1000) -> set[int]:
    """Token ids the texts tokenise to (no truncation: every word counts)."""
    seen: set[int] = set()
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == batch:
            seen.update(i for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"] for i in ids)
            chunk = []
    if chunk:
        seen.update(i for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"] for i in ids)
    return seen


def kept_ids(data: dict, used: set[int]) -> list[int]:
    """The ids kept, in order: those used, every added or special token, every single character (alone and
    as a ``##`` continuation)."""
    vocab = data["model"]["vocab"]
    prefix = data["model"].get("continuing_subword_prefix", "##")
    keep = set(used) | {t["id"] for t in data.get("added_tokens", [])}
    keep |= {i for tok, i in vocab.items() if len(tok) == 1 or (tok.startswith(prefix) and len(tok) == len(prefix) + 1)}
    return sorted(i for i in keep if 0 <= i < len(vocab))


def _renumber(node, new_id: dict[str, int]):
    """The post-processor with every special token's id replaced by its new one (TemplateProcessing's
    ``special_tokens``, or BertProcessing/RobertaProcessing's ``[token, id]`` pairs)."""
    if isinstance(node, dict):
        out = {k: _renumber(v, new_id) for k, v in node.items()}
        if isinstance(out.get("ids"), list) and isinstance(out.get("tokens"), list):
            out["ids"] = [new_id[t] for t in out["tokens"]]
        for key in ("sep", "cls"):
            pair = out.get(key)
            if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str):
                out[key] = [pair[0], new_id[pair[0]]]
        return out
    if isinstance(node, list):
        return [_renumber(v, new_id) for v in node]
    return node


def pruned_tokenizer_json(data: dict, keep: list[int]) -> dict:
    """``tokenizer.json`` with only the ``keep`` ids, renumbered 0..len(keep)-1 in their old order."""
    by_id = {i: tok for tok, i in data["model"]["vocab"].items()}
    new_id = {by_id[old]: new for new, old in enumerate(keep)}
    out = json.loads(json.dumps(data))
    out["model"]["vocab"] = new_id
    out["added_tokens"] = [{**t, "id": new_id[t["content"]]} for t in data.get("added_tokens", [])]
    if out.get("post_processor"):
        out["post_processor"] = _renumber(out["post_processor"], new_id)
    return out


def vocabulary_size(folder: str | Path, texts: Iterable[str]) -> dict:
    """What pruning ``folder``'s vocabulary to ``texts`` would keep, without a model: the counts kept, in the
    vocabulary and used (``prune_vocabulary``'s), or one line when the tokenizer is not WordPiece."""
    from transformers import AutoTokenizer  # noqa: PLC0415

    data = _word_piece(Path(folder))
    used = used_ids(AutoTokenizer.from_pretrained(str(folder)), texts)
    return {"kept": len(kept_ids(data, used)), "of": len(data["model"]["vocab"]), "used": len(used)}


def prune_vocabulary(model, folder: str | Path, texts: Iterable[str], out: str | Path) -> dict:
    """Save ``model`` (a transformers model whose tokenizer is in ``folder``) with only the vocabulary that
    ``texts`` use (see the module) into ``out``: weights, config and tokenizer. Returns the counts kept, in
    the vocabulary and used by the texts. ``out`` is written in place: a caller that publishes it gives a
    temporary name and renames (``paths``' rule)."""
    import torch  # noqa: PLC0415
    from transformers import AutoTokenizer  # noqa: PLC0415

    folder, out = Path(folder), Path(out)
    data = _word_piece(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    used = used_ids(tokenizer, texts)
    keep = kept_ids(data, used)
    old = model.get_input_embeddings()
    if old.weight.shape[0] != len(data["model"]["vocab"]):
        raise RetortError(f"{folder}: the model has {old.weight.shape[0]} word embeddings and its tokenizer "
                          f"{len(data['model']['vocab'])} tokens; they must match to prune")  # fmt: skip
    rows = torch.tensor(keep, dtype=torch.long)
    new = torch.nn.Embedding(len(keep), old.weight.shape[1], padding_idx=None)
    with torch.no_grad():
        new.weight.copy_(old.weight[rows])
    model.set_input_embeddings(new)
    remap = {o: n for n, o in enumerate(keep)}
    model.config.vocab_size = len(keep)
    if getattr(model.config, "pad_token_id", None) is not None:
        model.config.pad_token_id = remap[model.config.pad_token_id]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "tokenizer.json").write_text(json.dumps(pruned_tokenizer_json(data, keep), ensure_ascii=False))
    vocab_txt = out / "vocab.txt"
    if vocab_txt.exists():
        by_id = {i: tok for tok, i in data["model"]["vocab"].items()}
        vocab_txt.write_text("".join(by_id[i] + "\n" for i in keep), encoding="utf-8")
    return {"kept": len(keep), "of": len(data["model"]["vocab"]), "used": len(used)}
