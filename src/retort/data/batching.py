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
    labels: list[float | int | None]
    regression: bool
    teacher_logits: list[list[float]] | None = None  # precomputed teacher outputs, when the teacher cannot run

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
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
    )


def collate(data: Encoded, indices: list[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest example (dynamic padding)."""
    width = max(len(data.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(indices), width), dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(data.input_ids[i])
        ids[row, :n] = torch.tensor(data.input_ids[i])
        types[row, :n] = torch.tensor(data.token_type_ids[i])
        mask[row, :n] = 1
    batch = {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "index": torch.tensor(indices, dtype=torch.long),
    }
    labels = [data.labels[i] for i in indices]
    if all(label is not None for label in labels):
        dtype = torch.float if data.regression else torch.long
        batch["labels"] = torch.tensor(labels, dtype=dtype)
    if data.teacher_logits is not None:
        batch["teacher_logits"] = torch.tensor([data.teacher_logits[i] for i in indices], dtype=torch.float)
    return batch


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
