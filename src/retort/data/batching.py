"""Tokenisation once up front, dynamic padding, and length-grouped batch orders that can be resumed.

A batch order is a pure function of (dataset lengths, batch size, seed, epoch), so a resumed run
rebuilds the same order and skips the batches it has already trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retort.data.glue import Split


@dataclass
class Encoded:
    """A tokenised split: token ids per example (no padding) and labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: list[float | int | tuple[int, ...] | None]  # a multi-label task's are multi-hot tuples
    regression: bool
    teacher_logits: list[list[float]] | None = None  # precomputed teacher outputs, when the teacher cannot run
    pair_ids: list[list[int]] | None = None  # bi-encoder data: the second sentences, tokenised alone
    multi_label: bool = False  # labels are multi-hot (float targets of per-label sigmoids)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        """Each example's length in tokens (for a pair of separately tokenised texts, the longer one)."""
        if self.pair_ids is not None:
            return [max(len(a), len(b)) for a, b in zip(self.input_ids, self.pair_ids)]
        return [len(x) for x in self.input_ids]


def encode(split: Split, tokenizer, max_length: int = 128) -> Encoded:
    """Tokenise every example once (fast tokenizer, truncation to ``max_length``)."""
    columns = list(zip(*(ex.texts for ex in split.examples))) if split.examples else [[]]
    if split.task.is_pair and split.examples:
        enc = tokenizer(list(columns[0]), list(columns[1]), truncation=True, max_length=max_length)
    else:
        enc = tokenizer(list(columns[0]), truncation=True, max_length=max_length)
    token_type = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return Encoded(
        input_ids=list(enc["input_ids"]),
        token_type_ids=list(token_type),
        labels=[ex.label for ex in split.examples],
        regression=split.task.is_regression,
        multi_label=split.task.multi_label,
    )


def pad(sequences: list[list[int]], pad_id: int = 0, types: list[list[int]] | None = None):
    """(ids, token types, mask), each (B, longest) -- dynamic padding."""
    width = max(len(x) for x in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    type_ids = torch.zeros((len(sequences), width), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        if types is not None:
            type_ids[row, : len(seq)] = torch.tensor(types[row])
        mask[row, : len(seq)] = 1
    return ids, type_ids, mask


def collate(data: Encoded, indices: list[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest example (dynamic padding); bi-encoder data pads each side alone."""
    ids, types, mask = pad([data.input_ids[i] for i in indices], pad_id, [data.token_type_ids[i] for i in indices])
    batch = {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "index": torch.tensor(indices, dtype=torch.long),
    }
    if data.pair_ids is not None:
        b_ids, _, b_mask = pad([data.pair_ids[i] for i in indices], pad_id)
        batch["b_input_ids"], batch["b_attention_mask"] = b_ids, b_mask
    labels = [data.labels[i] for i in indices]
    if any(label is not None for label in labels):
        dtype = torch.float if data.regression or data.multi_label else torch.long
        empty = [0] * len(next(y for y in labels if y is not None)) if data.multi_label else 0
        batch["labels"] = torch.tensor([empty if y is None else y for y in labels], dtype=dtype)
        if not all(label is not None for label in labels):  # transfer-set examples have no gold label
            batch["label_mask"] = torch.tensor([y is not None for y in labels])
    if data.teacher_logits is not None:
        batch["teacher_logits"] = torch.tensor([data.teacher_logits[i] for i in indices], dtype=torch.float)
    return batch


def encode_pairs(split: Split, tokenizer, max_length: int = 128) -> Encoded:
    """Bi-encoder data: each sentence of a pair tokenised on its own."""
    if not split.task.is_pair:
        raise ValueError(f"{split.task.name} is not a sentence-pair task")
    a = tokenizer([ex.texts[0] for ex in split.examples], truncation=True, max_length=max_length)["input_ids"]
    b = tokenizer([ex.texts[1] for ex in split.examples], truncation=True, max_length=max_length)["input_ids"]
    return Encoded(
        input_ids=list(a),
        token_type_ids=[[0] * len(x) for x in a],
        labels=[ex.label for ex in split.examples],
        regression=split.task.is_regression,
        pair_ids=list(b),
        multi_label=split.task.multi_label,
    )


def batch_order(
    lengths: list[int],
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    group_by_length: bool = True,
    mega_batch_mult: int = 50,
) -> list[list[int]]:
    """Indices of each batch for one epoch; deterministic in (seed, epoch).

    With ``group_by_length``: shuffle, cut into mega-batches of ``mega_batch_mult`` batches, sort
    each by length (longest first), cut into batches, then shuffle the batches. Examples of similar
    length share a batch, so dynamic padding adds few pad tokens, and the order stays random.
    """
    n = len(lengths)
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist() if shuffle else list(range(n))
    if group_by_length and shuffle:
        mega = batch_size * mega_batch_mult
        order = [i for s in range(0, n, mega) for i in sorted(order[s : s + mega], key=lambda j: -lengths[j])]
    batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    if group_by_length and shuffle:
        perm = torch.randperm(len(batches), generator=g).tolist()
        batches = [batches[p] for p in perm]
    return batches


def eval_order(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches for evaluation: sorted by length for speed; predictions are put back in order."""
    order = sorted(range(len(lengths)), key=lambda j: -lengths[j])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
