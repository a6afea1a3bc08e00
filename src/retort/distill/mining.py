"""Mined sentence pairs: a transfer set for pair tasks, built from plain text (``retort mine-pairs``).

A pair-task student distilled on its task's own pairs sees only as many teacher judgements as the task
has rows (STS-B: 5,749). The teacher can score any pair, so more pairs carry more of its knowledge
(``--transfer``, data/transfer.py), but the pairs have to look like the task's: two unrelated random
sentences are all scored "unrelated", and the student learns nothing about the rest of the scale.
This module draws pairs from a text corpus with a spread of relatedness, using a sentence-embedding
model's cosine similarity (default all-MiniLM-L6-v2) to find related sentences:

    neighbour  one of the anchor's 3 nearest sentences in the pool (by cosine; exact duplicates left out)
    near       a sentence ranked 4 to 50 by cosine: related, less closely
    document   another sentence of the same document (same topic, usually not the same claim)
    random     any sentence of the pool (mostly unrelated)
    edited     the anchor itself with words dropped, swapped, replaced or repeated (data/augment.py):
               near-paraphrases and broken copies, the top of the scale

Each pair starts from its own anchor (pool sentences are shuffled, one anchor per pair) and the kind is
drawn with the probabilities of ``mix``; the order of the two texts is random. Nothing here labels a
pair: the teacher does that while the student trains. The output is a tab-separated file of two texts a
line, which ``--transfer FILE[:N]`` reads, and a JSON file beside it that says how it was made.

Corpus files: plain UTF-8 text, one paragraph a line, or WikiExtractor output (``<doc ...>`` and
``</doc>`` lines start and end a document; otherwise each file is one document). Sentences are split on
``.``, ``!`` or ``?`` followed by a space and an upper-case letter or a quote, and kept when they have
``min_words`` to ``max_words`` words; headings (lines without sentence punctuation at the end) go.

The nearest-neighbour search is exact (the pool's embeddings times themselves, in row blocks), so its
cost grows with the square of the pool: 50,000 sentences take about a minute on two CPU cores.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from retort import outputs
from retort.data.augment import Vocabulary, perturb
from retort.data.corpus import corpus_files, text_lines
from retort.errors import ConfigError, DataError, RetortError
from retort.paths import write_atomic

KINDS = ("neighbour", "near", "document", "random", "edited")
DEFAULT_MIX = {"neighbour": 0.3, "near": 0.2, "document": 0.2, "random": 0.1, "edited": 0.2}
NEIGHBOUR_RANKS = (1, 3)  # inclusive ranks (1 = nearest other sentence)
NEAR_RANKS = (4, 50)

_SPLIT = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')]))\s+(?=[A-Z\"'(])")
_END = re.compile(r"[.!?][\"')]?$")


@dataclass(frozen=True)
class Sentence:
    """A sentence of the corpus and the document it comes from (``document`` pairs are drawn within one)."""

    text: str
    doc: int  # index of the document it comes from


def parse_mix(spec: str | dict[str, float] | None) -> dict[str, float]:
    """``"neighbour=0.3,random=0.1,..."`` -> normalised probabilities of every kind (missing kinds: 0)."""
    if spec is None:
        raw = dict(DEFAULT_MIX)
    elif isinstance(spec, dict):
        raw = dict(spec)
    else:
        raw = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            try:
                raw[name.strip()] = float(value) if sep else float("nan")
            except ValueError:
                raw[name.strip()] = float("nan")
    unknown = set(raw) - set(KINDS)
    if unknown:
        raise ConfigError(f"pair mix: unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    if any(not (v >= 0) for v in raw.values()) or sum(raw.values()) <= 0:
        raise ConfigError(f"pair mix {spec!r}: give KIND=WEIGHT pairs, weights >= 0, not all 0")
    total = sum(raw.values())
    return {k: raw.get(k, 0.0) / total for k in KINDS}


def needs_neighbours(mix: dict[str, float]) -> bool:
    """Whether a parsed mix draws neighbour or near pairs, which need the pool's embeddings."""
    return mix["neighbour"] > 0 or mix["near"] > 0


def split_sentences(paragraph: str) -> list[str]:
    """The sentences of a paragraph, split after ``.``, ``!`` or ``?`` (a closing quote or bracket may
    follow) where the next one starts with a capital, quote or bracket; stripped, empty ones dropped."""
    return [s.strip() for s in _SPLIT.split(paragraph.strip()) if s.strip()]


def read_corpus(paths: list[str | Path], min_words: int = 6, max_words: int = 40) -> list[Sentence]:
    """The sentences of the corpus files (folders are read recursively, files in name order), deduplicated.
    Files are read by the corpus reader's checks (``data/corpus.py``: a FIFO, a binary or UTF-16 file or a
    line that is not UTF-8 is one line naming it)."""
    files = [f for p in paths for f in corpus_files(p)]
    seen: set[str] = set()
    out: list[Sentence] = []
    doc = -1
    for f in files:
        doc += 1  # ids only tell documents apart: gaps do not matter
        for _, line in text_lines(f):
            line = line.strip()
            if line.startswith(("<doc ", "<doc>")):
                doc += 1
                continue
            if line == "</doc>":
                continue
            if not _END.search(line):  # headings, titles, list fragments
                continue
            for s in split_sentences(line):
                n = len(s.split())
                if min_words <= n <= max_words and _END.search(s) and "\t" not in s and s not in seen:
                    seen.add(s)
                    out.append(Sentence(s, doc))
    if not out:
        raise DataError(f"corpus {', '.join(map(str, paths))}: no sentences of {min_words}-{max_words} words")
    return out


class MeanPooled(torch.nn.Module):
    """A Hugging Face encoder as a sentence embedder: L2-normalised mean of its last hidden states."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder
        self.embedding_dim = encoder.config.hidden_size

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids and mask -> (B, D) unit-length float32 embeddings (mean over real tokens)."""
        from retort.models.biencoder import mean_pool  # noqa: PLC0415

        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden, attention_mask).float(), dim=-1)


def embed_sentences(model_name: str, texts: list[str], batch_size: int = 128, max_length: int = 128) -> np.ndarray:
    """(N, D) L2-normalised mean-pooled embeddings of ``texts`` from a Hugging Face encoder folder or id."""
    from transformers import AutoModel  # noqa: PLC0415

    from retort.models.biencoder import embed_texts  # noqa: PLC0415
    from retort.models.hf import load_tokenizer, resolve_model_path  # noqa: PLC0415

    try:
        encoder = AutoModel.from_pretrained(resolve_model_path(model_name), dtype=torch.float32)
    except (OSError, ValueError) as e:  # no such folder or hub name (offline: not in the cache), or not a name
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RetortError(
            f"--model {model_name}: not a model folder, and no model of that name loads ({first})"
        ) from None
    model = MeanPooled(encoder).eval()
    max_length = min(max_length, getattr(encoder.config, "max_position_embeddings", max_length))  # its table
    desc = f"mine-pairs: embedding {len(texts)} sentences"
    return embed_texts(model, load_tokenizer(model_name), texts, batch_size, max_length, desc)


def nearest(embeddings: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """(N, k) indices of each row's k most cosine-similar other rows, most similar first (rows normalised)."""
    e = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    k = min(k, len(e) - 1)
    out = np.zeros((len(e), max(k, 0)), dtype=np.int64)
    if k <= 0:
        return out
    for s in range(0, len(e), block):
        sim = e[s : s + block] @ e.T
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + s] = float("-inf")  # not itself
        out[s : s + block] = sim.topk(k, dim=1).indices.numpy()
    return out


def mine_pairs(
    sentences: list[Sentence],
    embeddings: np.ndarray | None,
    n: int,
    mix: dict[str, float] | None = None,
    seed: int = 0,
    rate: float = 0.15,
) -> list[tuple[str, str, str]]:
    """``n`` pairs ``(text_a, text_b, kind)`` from the pool ``sentences`` (row i of ``embeddings`` is
    sentence i's normalised embedding; ``None`` is allowed when the mix has no neighbour or near pairs)."""
    mix = parse_mix(mix)
    if n <= 0:
        raise ConfigError("mine_pairs: n must be positive")
    if len(sentences) < 2:
        raise DataError("mine_pairs: the pool needs at least two sentences")
    needs_knn = needs_neighbours(mix)
    if needs_knn and (embeddings is None or len(embeddings) != len(sentences)):
        raise ConfigError("mine_pairs: neighbour and near pairs need one embedding per sentence")
    rng = random.Random(seed)
    knn = nearest(embeddings, NEAR_RANKS[1]) if needs_knn else None
    by_doc: dict[int, list[int]] = {}
    for i, s in enumerate(sentences):
        by_doc.setdefault(s.doc, []).append(i)
    vocab = Vocabulary([s.text for s in sentences]) if mix["edited"] > 0 else None
    kinds, weights = list(mix), list(mix.values())

    def partner(i: int, kind: str) -> str | None:
        if kind in ("neighbour", "near"):
            lo, hi = NEIGHBOUR_RANKS if kind == "neighbour" else NEAR_RANKS
            ranks = knn[i][lo - 1 : hi]
            return sentences[int(rng.choice(ranks))].text if len(ranks) else None
        if kind == "document":
            same = by_doc[sentences[i].doc]
            return sentences[rng.choice([j for j in same if j != i])].text if len(same) > 1 else None
        if kind == "random":
            j = rng.randrange(len(sentences) - 1)
            return sentences[j + (j >= i)].text
        return perturb(sentences[i].text, rng, vocab, rate)

    order = list(range(len(sentences)))
    pairs: list[tuple[str, str, str]] = []
    while len(pairs) < n:
        rng.shuffle(order)  # a pool smaller than n is walked again, in a new order
        before = len(pairs)
        for i in order:
            kind = rng.choices(kinds, weights)[0]
            other = partner(i, kind)
            if other is None or other == sentences[i].text:
                continue
            a, b = (sentences[i].text, other) if rng.random() < 0.5 else (other, sentences[i].text)
            pairs.append((a, b, kind))
            if len(pairs) == n:
                break
        if len(pairs) == before:  # a whole pass found no partner (e.g. document=1 on one-sentence documents)
            used = ", ".join(k for k, w in mix.items() if w)
            raise DataError(
                f"mine_pairs: no sentence of the pool has a partner of the kinds {used}; "
                f"{len(pairs)} of {n} pairs made (add other kinds to --mix)"
            )
    return pairs


PAIRS_PER_SENTENCE = 20  # the most pairs a pool sentence anchors, on average


def mine_corpus(
    corpus: list[str],
    out: str | Path,
    n: int,
    model: str = "all-MiniLM-L6-v2",
    pool: int | None = None,
    mix: str | dict[str, float] | None = None,
    seed: int = 0,
    min_words: int = 6,
    max_words: int = 40,
    batch_size: int = 128,
) -> dict:
    """Read the corpus, draw a pool of sentences (default ``n``), embed it, mine ``n`` pairs, write
    ``out`` (TSV) and ``out`` + ``.json`` (how it was made, counts per kind). Returns that record. Both
    files are checked by the output rule first: neither may be (or be inside) the corpus or the model."""
    reads = [*(outputs.local(c, "the corpus") for c in corpus), outputs.local(model, "the embedding model")]
    for target in (out, f"{out}.json"):
        outputs.check_output(target, "--out", reads=reads, parents=True)
    mix_p = parse_mix(mix)
    sentences = read_corpus(corpus, min_words, max_words)
    size = min(pool or n, len(sentences))
    if n > PAIRS_PER_SENTENCE * size:  # each anchor would be walked again and again: near-copies, hours
        raise ConfigError(
            f"--pairs {n}: more than {PAIRS_PER_SENTENCE} pairs per pool sentence (a pool of {size}"
            f"{'' if size == (pool or n) else ', all the corpus holds'}); raise --pool or lower --pairs"
        )
    chosen = sorted(random.Random(seed).sample(range(len(sentences)), size))
    pool_s = [sentences[i] for i in chosen]
    needs_knn = needs_neighbours(mix_p)
    emb = embed_sentences(model, [s.text for s in pool_s], batch_size) if needs_knn else None
    pairs = mine_pairs(pool_s, emb, n, mix_p, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "".join(f"{a}\t{b}\n" for a, b, _ in pairs))
    counts = {k: sum(1 for *_, kind in pairs if kind == k) for k in KINDS}
    record = {
        "pairs": len(pairs),
        "kinds": counts,
        "mix": mix_p,
        "corpus": [str(c) for c in corpus],
        "corpus_sentences": len(sentences),
        "pool": size,
        "model": model if needs_knn else None,
        "seed": seed,
        "min_words": min_words,
        "max_words": max_words,
        "neighbour_ranks": NEIGHBOUR_RANKS,
        "near_ranks": NEAR_RANKS,
    }
    write_atomic(f"{out}.json", json.dumps(record, indent=2) + "\n")
    return record
