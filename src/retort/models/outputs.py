"""The one record that models hand to objectives, and the adaptor that makes it from a Hugging Face model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelOutput:
    """What every model gives the objective. Shapes: B batch, T tokens, H width, nh heads, C classes.

    ``hidden_states[0]`` is the embedding output, ``hidden_states[l]`` the output of layer l.
    ``attentions[l - 1]`` holds layer l's attention probabilities. Both are None unless asked for.
    """

    logits: torch.Tensor  # (B, C); (B, 1) for regression
    attention_mask: torch.Tensor  # (B, T), 1 for real tokens
    hidden_states: tuple[torch.Tensor, ...] | None = None  # (L+1) x (B, T, H)
    attentions: tuple[torch.Tensor, ...] | None = None  # L x (B, nh, T, T)


@dataclass(frozen=True)
class Needs:
    """Which intermediate outputs an objective reads, so models compute only those."""

    hidden_states: bool = False
    attentions: bool = False

    def __or__(self, other: Needs) -> Needs:
        return Needs(self.hidden_states or other.hidden_states, self.attentions or other.attentions)


MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def forward(model: nn.Module, batch: dict[str, torch.Tensor], needs: Needs = Needs()) -> ModelOutput:
    """Run a Hugging Face sequence classifier and wrap what it returns in a ``ModelOutput``."""
    out = model(
        **{k: batch[k] for k in MODEL_INPUTS if k in batch},
        output_hidden_states=needs.hidden_states,
        output_attentions=needs.attentions,
        return_dict=True,
    )
    if needs.attentions and not out.attentions:
        raise RuntimeError("the model returned no attention maps; load it with attn_implementation='eager'")
    return ModelOutput(
        logits=out.logits,
        attention_mask=batch["attention_mask"],
        hidden_states=tuple(out.hidden_states) if needs.hidden_states else None,
        attentions=tuple(out.attentions) if needs.attentions else None,
    )
