"""A long-input STS-B variant for the length study (issue #4).

STS-B pairs are short (about 27 tokens together). A long example concatenates k pairs drawn at
random from one split: sentence A joins their k first sentences, sentence B their k second sentences,
in the same order. Its gold score is the mean of the k gold scores, and its teacher target is the
mean of the teacher's k pair scores, each computed on the short pair the teacher can read (cached,
see distill/teacher_cache.py). Pairs are added while the pair still fits in ``target_tokens``
(A + B + 3 special tokens), so examples come close to the target length without passing it. Pairs are
drawn without replacement within an example and with replacement across examples, so any number of
examples can be made from the 5,749 training pairs; dev examples use dev pairs only.
"""

from __future__ import annotations

import random

import numpy as np

from retort.data.batching import Encoded
from retort.data.glue import Split


def build_long(
    split: Split, teacher_scores: np.ndarray | None, tokenizer, target_tokens: int, n_examples: int, seed: int = 0
) -> Encoded:
    """``n_examples`` long examples of at most ``target_tokens`` tokens from the short pairs of ``split``."""
    rng = random.Random(seed * 7919 + target_tokens)
    a_ids = tokenizer([ex.texts[0] for ex in split.examples], add_special_tokens=False)["input_ids"]
    b_ids = tokenizer([ex.texts[1] for ex in split.examples], add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    out = Encoded([], [], [], regression=True, teacher_logits=[] if teacher_scores is not None else None)
    n = len(split.examples)
    for _ in range(n_examples):
        order = rng.sample(range(n), n)
        a, b, picked = [], [], []
        for i in order:
            if len(a) + len(b) + len(a_ids[i]) + len(b_ids[i]) + 3 > target_tokens:
                if picked:
                    break
                continue  # a single pair longer than the target: try another
            a += a_ids[i]
            b += b_ids[i]
            picked.append(i)
        ids = [cls, *a, sep, *b, sep]
        out.input_ids.append(ids)
        out.token_type_ids.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
        out.labels.append(float(np.mean([split.examples[i].label for i in picked])))
        if teacher_scores is not None:
            out.teacher_logits.append([float(np.mean(teacher_scores[picked, 0]))])
    return out
