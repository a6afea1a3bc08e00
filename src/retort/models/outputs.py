"""The one record that models hand to objectives, and the adaptor that makes it from a Hugging Face
BERT-family model.

Attention terms need pre-softmax scores (TinyBERT) or distributions (MiniLM) and value vectors
(MiniLM's value relation). Rather than asking transformers for attention maps (which only the slow
``eager`` backend returns, and only after the softmax), the adaptor captures each layer's query, key and
value projections with forward hooks and computes ``Q K^T / sqrt(d)`` itself. This works with the fast
``sdpa`` backend, costs one extra (B, nh, T, T) product per layer, and is done only when an objective
asks for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelOutput:
    """What every model gives the objective. Shapes: B batch, T tokens, H width, nh heads, C classes.

    ``hidden_states[0]`` is the embedding output, ``hidden_states[l]`` the output of layer l (1-based).
    ``attention_scores[l - 1]`` holds layer l's pre-softmax scores Q K^T / sqrt(d), padding not applied;
    ``attention_probs[l - 1]`` an explicit attention distribution, for models without softmax scores
    (linear attention); ``values[l - 1]`` layer l's value vectors, heads concatenated.
    Intermediate fields are None unless the objective asked for them.
    """

    logits: torch.Tensor  # (B, C); (B, 1) for regression
    attention_mask: torch.Tensor  # (B, T), 1 for real tokens
    hidden_states: tuple[torch.Tensor, ...] | None = None  # (L+1) x (B, T, H)
    attention_scores: tuple[torch.Tensor, ...] | None = None  # L x (B, nh, T, T)
    attention_probs: tuple[torch.Tensor, ...] | None = None  # L x (B, nh, T, T)
    values: tuple[torch.Tensor, ...] | None = None  # L x (B, T, H)

    def _map(self, fn, mask: bool = True) -> ModelOutput:
        """The same record with ``fn`` applied to every tensor (None entries stay None); the attention
        mask too unless ``mask`` is False."""

        def each(x):
            return None if x is None else tuple(None if t is None else fn(t) for t in x)

        return ModelOutput(
            fn(self.logits),
            fn(self.attention_mask) if mask else self.attention_mask,
            each(self.hidden_states),
            each(self.attention_scores),
            each(self.attention_probs),
            each(self.values),
        )

    def float(self) -> ModelOutput:
        """The same record in fp32 (losses are computed in fp32 whatever the forward's precision)."""
        return self._map(lambda t: t.float(), mask=False)

    def to(self, device) -> ModelOutput:
        """The same record on ``device``."""
        return self._map(lambda t: t.to(device))

    def detached(self) -> ModelOutput:
        """A copy whose tensors are ordinary (not inference-mode) tensors, safe to use in a loss."""
        return self._map(lambda t: t.clone())


@dataclass(frozen=True)
class Needs:
    """Which intermediate outputs an objective reads, so models compute only those."""

    hidden_states: bool = False
    attention_scores: bool = False
    values: bool = False

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.hidden_states or other.hidden_states,
            self.attention_scores or other.attention_scores,
            self.values or other.values,
        )


MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
_QKV = re.compile(r"layer\.(\d+)\.attention\.self\.(query|key|value)$")


def _qkv_modules(model: nn.Module) -> dict[tuple[int, str], nn.Module]:
    found = {}
    for name, module in model.named_modules():
        m = _QKV.search(name)
        if m:
            found[(int(m.group(1)), m.group(2))] = module
    if not found:
        raise RuntimeError(f"{type(model).__name__}: no BERT-style attention.self.query/key/value modules found")
    return found


def forward(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    needs: Needs = Needs(),
    layer_inputs: tuple[torch.Tensor, ...] | None = None,
) -> ModelOutput:
    """Run a Hugging Face BERT-family classifier and wrap what it returns in a ``ModelOutput``.

    Models with their own ``retort_forward(batch, needs)`` (retort's own architectures) are called
    through it instead; only those can be teacher-forced (``layer_inputs``: each layer's input given).
    """
    if hasattr(model, "retort_forward"):
        if layer_inputs is not None:
            return model.retort_forward(batch, needs, layer_inputs=layer_inputs)
        return model.retort_forward(batch, needs)
    if layer_inputs is not None:
        raise ValueError(f"{type(model).__name__} cannot be teacher-forced (retort's linear student can)")
    captured: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    if needs.attention_scores or needs.values:
        kinds = ({"query", "key"} if needs.attention_scores else set()) | ({"value"} if needs.values else set())
        for key, module in _qkv_modules(model).items():
            if key[1] in kinds:
                handles.append(
                    module.register_forward_hook(lambda _m, _i, out, key=key: captured.__setitem__(key, out))
                )
    try:
        out = model(
            **{k: batch[k] for k in MODEL_INPUTS if k in batch},
            output_hidden_states=needs.hidden_states,
            return_dict=True,
        )
    finally:
        for h in handles:
            h.remove()
    layers = model.config.num_hidden_layers
    heads = model.config.num_attention_heads
    scores = values = None
    if needs.attention_scores:
        scores = tuple(attention_scores(captured[(i, "query")], captured[(i, "key")], heads) for i in range(layers))
    if needs.values:
        values = tuple(captured[(i, "value")] for i in range(layers))
    return ModelOutput(
        logits=out.logits,
        attention_mask=batch["attention_mask"],
        hidden_states=tuple(out.hidden_states) if needs.hidden_states else None,
        attention_scores=scores,
        values=values,
    )


def attention_scores(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, H) queries and keys -> (B, nh, T, T) scores Q K^T / sqrt(d_head), per head."""
    b, t, h = q.shape
    d = h // heads
    q = q.view(b, t, heads, d).transpose(1, 2)  # (B, nh, T, d)
    k = k.view(b, t, heads, d).transpose(1, 2)
    return q @ k.transpose(-1, -2) / d**0.5
