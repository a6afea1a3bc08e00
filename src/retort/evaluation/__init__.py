"""Scoring models: ``metrics`` (GLUE's official metrics), ``evaluator`` (a PyTorch model on encoded splits,
as the trainer uses it), ``significance`` (paired tests between methods), and ``folder`` with ``pytorch``:
one evaluation path for PyTorch and export folders (``retort eval``, ``retort predict``)."""
