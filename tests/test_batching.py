import torch

from retort.data.batching import batch_order, collate, encode, eval_order
from retort.data.tasks import load_split
from retort.models.hf import load_tokenizer


def test_batch_order_is_a_permutation_and_deterministic():
    lengths = [(i * 7) % 31 + 1 for i in range(103)]
    a = batch_order(lengths, 8, seed=3, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(103))
    assert a == batch_order(lengths, 8, seed=3, epoch=1)
    assert a != batch_order(lengths, 8, seed=3, epoch=2)
    assert a != batch_order(lengths, 8, seed=4, epoch=1)


def _padding(lengths, batches):
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_length_grouping_cuts_padding():
    lengths = [(i * 37) % 97 + 3 for i in range(1000)]
    grouped = batch_order(lengths, 16, seed=0, epoch=0, group_by_length=True)
    plain = batch_order(lengths, 16, seed=0, epoch=0, group_by_length=False)
    assert _padding(lengths, grouped) < 0.2 * _padding(lengths, plain)


def test_eval_order_covers_everything():
    lengths = [5, 1, 9, 3]
    order = eval_order(lengths, 3)
    assert sorted(i for b in order for i in b) == [0, 1, 2, 3]
    assert order[0][0] == 2


def test_dynamic_padding_and_pairs(glue_dir, tiny_model):
    tok = load_tokenizer(str(tiny_model))
    data = encode(load_split("RTE", "dev", glue_dir), tok, max_length=64)
    batch = collate(data, [0, 1, 2])
    width = max(len(data.input_ids[i]) for i in [0, 1, 2])
    assert batch["input_ids"].shape == (3, width)
    assert batch["attention_mask"].sum().item() == sum(len(data.input_ids[i]) for i in [0, 1, 2])
    assert batch["token_type_ids"].max().item() == 1  # second sentence of the pair
    assert batch["labels"].dtype == torch.long
    sts = encode(load_split("STS-B", "dev", glue_dir), tok)
    assert collate(sts, [0, 1])["labels"].dtype == torch.float
