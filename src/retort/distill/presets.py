"""Method presets: each names the objective weights of a well-known method on the same teacher and
student. Any field set in the config (``--set objective.beta=2``) overrides the preset.

=============  =========================================================================  ==========
method         terms                                                                      stages
=============  =========================================================================  ==========
kd             0.9 * soft + 0.1 * hard (Hinton et al. 2015)                               all
distilbert     0.9 * soft + 0.1 * hard + 1.0 * cosine(last hidden) (Sanh et al. 2019)      all
tinybert       embedding + hidden MSE + attention-score MSE on every mapped layer, then    intermediate,
               soft (Jiao et al. 2020)                                                     prediction
minilm         last-layer attention KL + value-relation KL, then soft + hard              intermediate,
               (Wang et al. 2020)                                                          prediction
mobilebert     progressive knowledge transfer: layer l alone, the layers below frozen, on     progressive
               hidden MSE + attention KL at layer l, for l = 1..L; then soft + hard          (L times),
               (Sun et al. 2020; MobileBERT's bottleneck architecture is not built)        prediction
dse            0.5 * MSE(student logits, teacher logits) + 0.5 * hard, i.e.                 all
               (1 - c) * task + c * MSE with c = 0.5 (Barkan et al. 2020; bi-encoders)
multilevel     1.0 * soft + 0.1 * hard + 1.0 * hidden + 1.0 * attention-score MSE, with   all
               layer weights set from each layer's loss (retort)
=============  =========================================================================  ==========

A two-stage method runs as two commands: ``--stage intermediate`` and then ``--stage prediction
--student-init RUN/model``; ``--stage all`` trains every term of the method at once. ``mobilebert`` runs
as L + 1 commands: ``--stage progressive --progressive-layer l`` for l = 1..L (each from the previous
one's model), then ``--stage prediction``.
"""

from __future__ import annotations

import dataclasses

from retort.errors import ConfigError

_ZERO = dict(alpha=0.0, hard_weight=0.0, beta=0.0, gamma=0.0, value_weight=0.0, cosine_weight=0.0)

PRESETS: dict[str, dict] = {
    "kd": {**_ZERO, "alpha": 0.9, "hard_weight": 0.1},
    "distilbert": {**_ZERO, "alpha": 0.9, "hard_weight": 0.1, "cosine_weight": 1.0},
    "tinybert": {
        **_ZERO,
        "alpha": 1.0,
        "beta": 1.0,
        "gamma": 1.0,
        "attention_loss": "mse",
        "embeddings": True,
        "attention_layers": "mapped",
        "layer_weights": "static",
    },
    "minilm": {
        **_ZERO,
        "alpha": 0.9,
        "hard_weight": 0.1,
        "gamma": 1.0,
        "value_weight": 1.0,
        "attention_loss": "kl",
        "attention_layers": "last",
        "layer_weights": "static",
    },
    "mobilebert": {
        **_ZERO,
        "alpha": 0.9,
        "hard_weight": 0.1,
        "beta": 1.0,
        "gamma": 1.0,
        "attention_loss": "kl",
        "embeddings": False,
        "attention_layers": "mapped",
        "layer_weights": "static",
    },
    "dse": {**_ZERO, "alpha": 0.5, "hard_weight": 0.5, "soft_loss": "mse"},
    "multilevel": {
        **_ZERO,
        "alpha": 1.0,
        "hard_weight": 0.1,
        "beta": 1.0,
        "gamma": 1.0,
        "attention_loss": "mse",
        "embeddings": True,
        "attention_layers": "mapped",
        "layer_weights": "loss",
    },
}
TWO_STAGE = {"tinybert", "minilm"}
PROGRESSIVE = {"mobilebert"}  # L progressive stages, then prediction
DEFAULTS = {
    "soft_loss": "kl",
    "attention_loss": "mse",
    "embeddings": True,
    "attention_layers": "mapped",
    "layer_weights": "static",
}


def resolve(cfg):
    """Fill every field left as None from the method's preset (then from DEFAULTS)."""
    if cfg.method not in PRESETS:
        raise ConfigError(f"objective.method {cfg.method!r}: unknown; choose one of: {', '.join(PRESETS)}")
    preset = {**DEFAULTS, **PRESETS[cfg.method]}
    filled = {
        f.name: preset[f.name] for f in dataclasses.fields(cfg) if getattr(cfg, f.name) is None and f.name in preset
    }
    out = dataclasses.replace(cfg, **filled)
    if out.soft_loss not in ("mse", "kl"):
        raise ConfigError(f"objective.soft_loss {out.soft_loss!r}: choose kl or mse")
    if out.attention_loss not in ("mse", "kl"):
        raise ConfigError(f"objective.attention_loss {out.attention_loss!r}: choose mse or kl")
    if out.attention_layers not in ("mapped", "last"):
        raise ConfigError(f"objective.attention_layers {out.attention_layers!r}: choose mapped or last")
    return out
