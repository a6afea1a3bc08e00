"""Distillation: the losses, the objective that weighs them, and what the teacher provides.

- ``losses``: loss terms as pure, masked functions over tensors.
- ``layer_weights``: per-layer weights of the hidden and attention terms (static, from the loss, learned).
- ``objective``: ``Distillation``, the objective of every method, and ``FineTune``; training stages.
- ``presets``: each method's (kd, distilbert, tinybert, minilm, mobilebert, dse, multilevel) weights.
- ``teacher_cache``: teacher outputs computed once and cached on disk.
- ``mining``: sentence pairs mined from a plain-text corpus, as a transfer set for pair tasks.
"""
