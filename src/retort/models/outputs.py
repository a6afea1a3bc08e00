"""The one record that models hand to objectives, and the function that makes it from a Hugging Face
encoder of any family in ``families.py``.

Attention terms need pre-softmax scores (TinyBERT) or distributions (MiniLM) and value vectors
(MiniLM's value relation). Where Q K^T / sqrt(d) is the family's true score (BERT and its kin), each
layer's query and key projections are captured with forward hooks and the score computed from them:
this works with the fast ``sdpa`` backend, costs one extra (B, nh, T, T) product per layer, and is
done only when an objective asks for it. Where it is not (DeBERTa, MPNet, ModernBERT), the model's own
attention probabilities are returned in ``attention_probs`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from retort.models.families import Family, family_of


@dataclass
class ModelOutput:
    """What every model gives the objective. Shapes: B batch, T tokens, H width, nh heads, C classes.

    ``hidden_states[0]`` is the embedding output, ``hidden_states[l]`` the output of layer l (1-based).
    ``attention_scores[l - 1]`` holds layer l's pre-softmax scores Q K^T / sqrt(d), padding not applied,
    for families where that is the true score; ``attention_probs[l - 1]`` the model's own attention
    distribution where it is not (DeBERTa, MPNet, ModernBERT, the linear student's explicit map); a model
    fills one of the two. ``values[l - 1]`` layer l's value vectors, heads concatenated.
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


def _hooked_modules(model: nn.Module, fam: Family, kinds: set[str]) -> dict[tuple[int, str], nn.Module]:
    """(layer, "query" | "key" | "value" | "qkv") -> the module whose output is that projection."""
    found = {}
    for i, layer in enumerate(fam.layer_list(model)):
        for kind in kinds:
            path = fam.qkv if fam.qkv else getattr(fam, kind)
            found[(i, "qkv" if fam.qkv else kind)] = layer.get_submodule(path)
    return found


def forward(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    needs: Needs = Needs(),
    layer_inputs: tuple[torch.Tensor, ...] | None = None,
) -> ModelOutput:
    """Run a Hugging Face classifier of any family in ``models/families.py`` and wrap what it returns in
    a ``ModelOutput``.

    Models with their own ``retort_forward(batch, needs)`` (retort's own architectures) are called
    through it instead; only those can be teacher-forced (``layer_inputs``: each layer's input given).
    """
    if hasattr(model, "retort_forward"):
        if layer_inputs is not None:
            return model.retort_forward(batch, needs, layer_inputs=layer_inputs)
        return model.retort_forward(batch, needs)
    if layer_inputs is not None:
        raise ValueError(f"{type(model).__name__} cannot be teacher-forced (retort's linear student can)")
    fam = family_of(model.config)
    probs = needs.attention_scores and fam.attention == "probs"
    kinds = {"query", "key"} if needs.attention_scores and not probs else set()
    kinds |= {"value"} if needs.values else set()
    if probs and model.config._attn_implementation != "eager":
        model.set_attn_implementation("eager")  # only the eager backend returns attention probabilities
    captured: dict[tuple[int, str], torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, key=key: captured.__setitem__(key, out))
        for key, module in (_hooked_modules(model, fam, kinds) if kinds else {}).items()
    ]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if fam.takes_token_types(model.config) and "token_type_ids" in batch:
        inputs["token_type_ids"] = batch["token_type_ids"]
    try:
        out = model(**inputs, output_hidden_states=needs.hidden_states, output_attentions=probs, return_dict=True)
    finally:
        for h in handles:
            h.remove()
    layers = model.config.num_hidden_layers
    heads = model.config.num_attention_heads

    def projection(i: int, kind: str) -> torch.Tensor:  # (B, T, H)
        if not fam.qkv:
            return captured[(i, kind)]
        return captured[(i, "qkv")].chunk(3, dim=-1)[("query", "key", "value").index(kind)]

    scores = None
    if needs.attention_scores and not probs:
        scores = tuple(attention_scores(projection(i, "query"), projection(i, "key"), heads) for i in range(layers))
    return ModelOutput(
        logits=out.logits,
        attention_mask=batch["attention_mask"],
        hidden_states=tuple(out.hidden_states) if needs.hidden_states else None,
        attention_scores=scores,
        attention_probs=tuple(out.attentions) if probs else None,
        values=tuple(projection(i, "value") for i in range(layers)) if needs.values else None,
    )


def attention_scores(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, H) queries and keys -> (B, nh, T, T) scores Q K^T / sqrt(d_head), per head."""
    b, t, h = q.shape
    d = h // heads
    q = q.view(b, t, heads, d).transpose(1, 2)  # (B, nh, T, d)
    k = k.view(b, t, heads, d).transpose(1, 2)
    return q @ k.transpose(-1, -2) / d**0.5
