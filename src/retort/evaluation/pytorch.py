"""A saved PyTorch model folder (teacher, student, DSE bi-encoder) as the predictor of ``retort eval`` and
``retort predict``: its tokenizer encodes a split, the model gives logits in the split's order.

``evaluation/folder.py`` imports this module only for a PyTorch folder, so that an export folder is
evaluated without torch; ``ExportPredictor`` there is its onnxruntime twin.
"""

from __future__ import annotations

import numpy as np
import torch

from retort.data.batching import Encoded, encode, encode_pairs
from retort.data.glue import Split
from retort.data.spec import folder_task
from retort.data.tasks import get_task
from retort.errors import RetortError
from retort.evaluation.evaluator import predict_split
from retort.models.biencoder import BiEncoder
from retort.models.check import inspect_model_folder
from retort.models.hf import check_finite, load_classifier, load_tokenizer, settle_max_length


class PyTorchPredictor:
    """A model folder loaded for inference on the CPU, checked first (``models/check.py``; ``path`` is what
    was loaded: a run folder's model): ``inputs(split)`` tokenises a split once (each sentence of a pair
    alone for a bi-encoder), ``logits(inputs, ...)`` runs the model over it."""

    def __init__(
        self,
        model_dir: str,
        task_name: str,
        max_length: int | None = None,
        threads: int | None = None,
        option: str = "--model",
    ):
        if threads:
            torch.set_num_threads(threads)
        found = inspect_model_folder(model_dir, option, "model")  # a run folder: its model, said on stderr
        own = folder_task(found.path)  # a task of the user's is registered from the folder's spec
        if task_name is None and own is None:
            raise RetortError(f"{option} {model_dir}: the folder does not say its task; give --task or --data")
        self.task = get_task(task_name or own.name)
        self.path = found.path
        self.tokenizer = found.tokenizer or load_tokenizer(found.path, option)
        self.model = load_classifier(found.path, self.task, option=option, trained_head=True)
        check_finite(self.model, found.path)
        self.max_length = settle_max_length(max_length, self.model.config, found.path)  # None: 128, or the table
        self.record: dict = {}  # nothing to add to the evaluation record (an export names its backend there)

    def inputs(self, split: Split) -> Encoded:
        """The split tokenised once, truncated to ``max_length`` tokens."""
        return (encode_pairs if isinstance(self.model, BiEncoder) else encode)(split, self.tokenizer, self.max_length)

    def logits(self, data: Encoded, batch_size: int, desc: str | None) -> np.ndarray:
        """Logits (N, C), (N, 1) for regression, in the split's order; progress under ``desc``."""
        return predict_split(self.model, data, batch_size, "cpu", self.tokenizer.pad_token_id or 0, desc)

    def threads(self) -> int:
        """The intra-op threads torch runs with."""
        return torch.get_num_threads()
