"""The configuration of the linear-attention student (``linear.py``): a transformers config whose
``model_type`` is ``retort-linear-bert``, with BERT's fields and the feature map's. It is registered with
``AutoConfig`` by ``linear.py``; saved students keep loading, since their ``config.json`` names only the
``model_type``.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

MODEL_TYPE = "retort-linear-bert"


@strict
class LinearBertConfig(PreTrainedConfig):
    """A transformers config (``model_type = "retort-linear-bert"``, registered with ``AutoConfig`` when
    ``retort`` is imported). Task fields (``num_labels``, ``id2label``, ``problem_type``) are the base class's."""

    model_type = MODEL_TYPE

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float | int = 0.1
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    head_act: str = "tanh"  # between the head's dense layer and the classifier (the teacher family's)
    retort_task: str | None = None
    feature_map: str = "elu"  # elu | relu | favor | hedgehog
    hedgehog_act: str = "softmax"  # hedgehog: softmax | exp over the features
    hedgehog_qk: str = "shared"  # hedgehog: one map for queries and keys (shared) or one each (separate)
    num_features: int = 64  # favor: random features per head
    redraw: bool = False  # favor: draw new random features at every training step
    eps: float = 1e-6
