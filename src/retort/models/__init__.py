"""Models: teachers and students, and the one output record they hand to the objective.

- ``families``: one adaptor per model family, as data (layers, projections, positions, BERT names).
- ``outputs``: ``ModelOutput``, the record models give objectives, and ``forward`` that makes it.
- ``hf``: loading teachers and tokenizers, saving models in Hugging Face format (safetensors only).
- ``student``: students of shape ``LxH`` built from the teacher's config.
- ``init``: how a student is initialised from its teacher (layer copy, positions, linear student config).
- ``layer_map``: which teacher layer each student layer learns from.
- ``prune``: width pruning of the teacher as a student's start.
- ``linear``: the linear-attention BERT student, with its quadratic reference.
- ``linear_configuration``: that student's transformers config (``retort-linear-bert``).
- ``biencoder``: the siamese bi-encoder student of distilled sentence embeddings (DSE).
- ``inference``: a model's logits over the batches it is given, in row order.
- ``packaged``: models shipped on the package index as split zips, assembled into a folder.
"""
