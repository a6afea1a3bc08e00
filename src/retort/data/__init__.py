"""Data: tasks and their readers, tokenised batches, corpora and transfer sets.

- ``glue``: the ``Task`` record and the nine GLUE tasks as built-in specs (hub fallback included).
- ``spec``, ``tables``, ``tasks``: a user's spec resolved; rows of every format read; tasks by name and splits.
- ``batching``: tokenisation once up front, dynamic padding, resumable length-grouped batch orders.
- ``corpus``: a text corpus for general distillation, tokenised once into memory-mapped shards.
- ``transfer``: transfer sets, the unlabelled inputs the teacher labels during distillation.
- ``augment``: word-level augmentation of a task's own training texts, for transfer sets.
- ``long_sts``: a long-input STS-B variant for the length study.
"""
