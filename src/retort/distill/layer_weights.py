"""Per-layer weights for the hidden and attention terms, as ``nn.Module``s inside the objective.

Three modes, each giving weights w_1..w_L (L = number of mapped layers) that sum to L, so the term's
scale does not depend on the mode:

``static``
    w_l = 1.

``loss`` (default of ``multilevel``) -- weights set from each layer's current loss, after Dynamic
    Weight Averaging (Liu et al., CVPR 2019). Keep an exponential moving average ``e_l`` of each layer's
    (detached) loss, updated every training step with momentum 0.9. The rate r_l = e_l(t) / e_l(t - K)
    compares it with its value K steps earlier (a ring buffer; K = ``weight_window``, default 50); then
    w = L * softmax(r / T), T = ``weight_temperature`` (default 0.5: rates over 50 steps stay within
    about 0.8 to 1.0, so DWA's T = 2 would barely move the weights).
    A layer whose loss falls more slowly than the others gets more weight; no weight can reach 0, so
    no layer is abandoned (rates near 1 keep the weights within a band around 1).
    Before K steps have passed the weights are 1. The state lives in buffers, so it is saved in
    checkpoints and restored on resume.

``learned`` -- weights learned by the optimizer: w = L * ((1 - f) * softmax(theta) + f / L), with
    f = ``weight_floor`` (default 0.2). Minimising sum_l w_l * loss_l alone would move all weight onto
    the easiest layer; the floor keeps every layer at least f of the uniform weight, and the objective
    adds ``weight_entropy`` * KL(softmax(theta) || uniform) (default 0.1) to the loss to resist collapse.
"""

from __future__ import annotations

import torch
from torch import nn

from retort.errors import ConfigError


class LayerWeights(nn.Module):
    """Weights for one term's per-layer losses in one of the three modes above (``static``, ``loss``,
    ``learned``); called on the (L,) losses, it returns the (L,) weights and a regulariser."""

    def __init__(
        self,
        n_layers: int,
        mode: str = "static",
        temperature: float = 0.5,
        window: int = 50,
        momentum: float = 0.9,
        floor: float = 0.2,
        entropy_weight: float = 0.1,
    ):
        super().__init__()
        if mode not in ("static", "loss", "learned"):
            raise ConfigError(f"layer weights {mode!r}: choose static, loss or learned")
        self.mode, self.n = mode, n_layers
        self.temperature, self.window, self.momentum = temperature, window, momentum
        self.floor, self.entropy_weight = floor, entropy_weight
        if mode == "learned":
            self.theta = nn.Parameter(torch.zeros(n_layers))
        if mode == "loss":
            self.register_buffer("ema", torch.zeros(n_layers))
            self.register_buffer("history", torch.zeros(window, n_layers))  # ring buffer of past EMAs
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, layer_losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights (L,) for these per-layer losses (L,), and a regulariser to add to the total loss."""
        zero = layer_losses.new_zeros(())
        if self.mode == "static":
            return torch.ones_like(layer_losses), zero
        if self.mode == "learned":
            p = torch.softmax(self.theta, 0)
            w = self.n * ((1 - self.floor) * p + self.floor / self.n)
            kl_uniform = (p * (p.clamp_min(1e-12) * self.n).log()).sum()
            return w, self.entropy_weight * kl_uniform
        return self._loss_weights(layer_losses.detach()), zero

    @torch.no_grad()
    def _loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.current()
        s = int(self.steps)
        self.ema.copy_(losses if s == 0 else self.momentum * self.ema + (1 - self.momentum) * losses)
        w = self.current()
        self.history[s % self.window] = self.ema
        self.steps += 1
        return w

    @torch.no_grad()
    def current(self) -> torch.Tensor:
        """The weights as they stand now (for logging and plots)."""
        if self.mode == "static":
            return torch.ones(self.n)
        if self.mode == "learned":
            p = torch.softmax(self.theta.detach(), 0)
            return self.n * ((1 - self.floor) * p + self.floor / self.n)
        s = int(self.steps)
        if s < self.window:
            return torch.ones_like(self.ema)
        past = self.history[s % self.window]  # the EMA as it was `window` steps ago
        rate = self.ema / past.clamp_min(1e-12)
        return self.n * torch.softmax(rate / self.temperature, 0)
