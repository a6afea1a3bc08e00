"""Word-level augmentation of a task's own training texts, for transfer sets (``--transfer aug:TASK[:N]``).

TinyBERT distils on augmented task data: each training sentence is copied many times with some words
replaced, and the teacher labels the copies. TinyBERT picks replacements with BERT's masked-LM head
and GloVe neighbours; retort's teachers are classifiers without an MLM head and the hubs are not
always reachable, so this module makes the copies with four plain edits, each applied to a word with
probability ``rate``:

    drop     the word is removed
    swap     the word changes places with the next one
    replace  the word becomes a word drawn from the task's training vocabulary (by frequency)
    repeat   the word is written twice

Every copy has at least one edit and differs from its source. Many copies are no longer grammatical
or no longer say the same thing; that is the point: the teacher's scores on inputs near the training
distribution, including broken ones (CoLA's "unacceptable" class), are what the student has not seen.
The copies are a pure function of the texts, ``n``, ``rate`` and ``seed``.
"""

from __future__ import annotations

import random
from collections import Counter
from itertools import accumulate

from retort.data.glue import Example, Split
from retort.errors import DataError

EDITS = ("drop", "swap", "replace", "repeat")


class Vocabulary:
    """The words of a set of texts, drawn by frequency."""

    def __init__(self, texts: list[str]):
        counts = Counter(w for t in texts for w in t.split())
        if not counts:
            raise DataError("augmentation: the source texts have no words")
        self.words = list(counts)
        self.cum_weights = list(accumulate(counts.values()))

    def draw(self, rng: random.Random) -> str:
        """One word drawn from ``rng`` with probability proportional to its count in the source texts."""
        return rng.choices(self.words, cum_weights=self.cum_weights)[0]


def perturb(text: str, rng: random.Random, vocab: Vocabulary, rate: float = 0.15) -> str:
    """``text`` with each whitespace-separated word edited with probability ``rate`` (at least one edit)."""
    words = text.split()
    if not words:
        return text
    chosen = [i for i in range(len(words)) if rng.random() < rate] or [rng.randrange(len(words))]
    out = list(words)
    for i in reversed(chosen):  # right to left, so earlier indices stay valid
        edit = rng.choice(EDITS if len(out) > 1 else ("replace", "repeat"))
        if edit == "drop":
            del out[i]
        elif edit == "swap":
            j = i + 1 if i + 1 < len(out) else i - 1
            out[i], out[j] = out[j], out[i]
        elif edit == "replace":
            out[i] = vocab.draw(rng)
        else:
            out.insert(i, out[i])
    return " ".join(out)


def augment(split: Split, n: int, seed: int = 0, rate: float = 0.15) -> Split:
    """``n`` edited, unlabelled copies of ``split``'s texts, sources taken round-robin in a shuffled order.

    For a pair task each text of the pair is edited independently; a copy equal to its source is drawn
    again (up to 10 times, then skipped).
    """
    if not split.examples:
        raise DataError(f"augmentation: {split.source} has no examples")
    rng = random.Random(seed)
    vocab = Vocabulary([t for ex in split.examples for t in ex.texts])
    order = list(range(len(split.examples)))
    out: list[Example] = []
    attempts = 0
    while len(out) < n:
        rng.shuffle(order)
        for i in order:
            src = split.examples[i].texts
            for _ in range(10):
                if len(src) == 1:
                    texts = (perturb(src[0], rng, vocab, rate),)
                else:
                    texts = tuple(perturb(t, rng, vocab, rate) if rng.random() < 0.5 else t for t in src)
                if texts != src:
                    out.append(Example(texts, None))
                    break
            attempts += 1
            if len(out) == n:
                break
        if attempts > 20 * n + len(order):
            raise DataError(f"augmentation: could not make {n} edited copies of {split.source}")
    return Split(split.task, "transfer", out, f"{split.source} (augmented x{n}, rate {rate}, seed {seed})")
